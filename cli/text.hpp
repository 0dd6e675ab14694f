// jobring CLI — small text helpers: JSON strings, UTF-8 validation, base64.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace jobring::cli {

// True if `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_utf8(std::string_view s);

// `s` as a JSON string literal, quotes included (s must be valid UTF-8).
std::string json_string(std::string_view s);

std::string base64_encode(std::span<const std::byte> data);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace jobring::cli
