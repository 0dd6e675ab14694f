// jobring — interrupting blocking calls (claim with a wait, push with a wait)
// from a signal handler or another thread.
#pragma once

namespace jobring {

// Makes every blocking call in this process (claim, claim_many, push with a
// wait) return `interrupted` promptly (at once as a rule, within 200 ms at
// worst), now and until clear_interrupt(). Safe to call from a signal
// handler: use it for graceful shutdown on SIGTERM.
void interrupt_waits() noexcept;
void clear_interrupt() noexcept;

// Wakes every blocking call in this process (claim, claim_many, push with a
// wait) so that it looks at its stop flag (ClaimOptions::stop,
// PushOptions::stop): those whose flag is set return `interrupted`, the
// others go back to waiting. Call it after setting a flag. Safe to call from
// a signal handler.
void wake_waits() noexcept;

}  // namespace jobring
