// jobring — durations as people write them: "500ms", "30s", "2m", "1h", "7d".
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace jobring {

// Parses a non-negative whole number with a unit: ms, s, m (or min), h or d; a bare
// number means milliseconds. Returns nullopt for anything else (negative,
// fractional, overflowing, unknown unit, empty).
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept;

// The inverse, in the largest unit that divides it exactly ("1500ms", "30s", "2m").
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

}  // namespace jobring
