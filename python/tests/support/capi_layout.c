/* Prints the size and field offsets of every struct in jobring.h, one
 * "struct SIZE" or "struct.field OFFSET" per line, for the Python package's
 * test that its ctypes mirrors (python/jobring/_capi.py) match the header
 * the library was built with. */
#include <stddef.h>
#include <stdio.h>

#include "jobring/jobring.h"

#define SIZE(s) printf("%s %zu\n", #s, sizeof(s))
#define OFF(s, f) printf("%s.%s %zu\n", #s, #f, offsetof(s, f))

int main(void) {
  SIZE(jobring_options);
  OFF(jobring_options, size);
  OFF(jobring_options, capacity);
  OFF(jobring_options, max_payload);
  OFF(jobring_options, default_lease_ms);
  OFF(jobring_options, max_attempts);
  OFF(jobring_options, mode);
  OFF(jobring_options, group);
  OFF(jobring_options, dedup_keys);
  OFF(jobring_options, reserved0);
  OFF(jobring_options, dedup_window_ms);
  OFF(jobring_options, dir);
  OFF(jobring_options, sync);
  OFF(jobring_options, sync_interval_ms);

  SIZE(jobring_push_options);
  OFF(jobring_push_options, size);
  OFF(jobring_push_options, delay_ms);
  OFF(jobring_push_options, wait_ms);
  OFF(jobring_push_options, key);
  OFF(jobring_push_options, key_len);
  OFF(jobring_push_options, stop);

  SIZE(jobring_lease);
  OFF(jobring_lease, job);
  OFF(jobring_lease, token);
  OFF(jobring_lease, slot);
  OFF(jobring_lease, reserved0);

  SIZE(jobring_claim_options);
  OFF(jobring_claim_options, size);
  OFF(jobring_claim_options, lease_ms);
  OFF(jobring_claim_options, wait_ms);
  OFF(jobring_claim_options, owner);
  OFF(jobring_claim_options, reserved0);
  OFF(jobring_claim_options, stop);

  SIZE(jobring_stats);
  OFF(jobring_stats, size);
  OFF(jobring_stats, free);
  OFF(jobring_stats, writing);
  OFF(jobring_stats, ready);
  OFF(jobring_stats, delayed);
  OFF(jobring_stats, leased);
  OFF(jobring_stats, expired);
  OFF(jobring_stats, dead);
  OFF(jobring_stats, corrupt);
  OFF(jobring_stats, oldest_lease_ms);
  OFF(jobring_stats, oldest_ready_ms);
  OFF(jobring_stats, keys_live);
  OFF(jobring_stats, keys_remembered);
  OFF(jobring_stats, keys_capacity);
  OFF(jobring_stats, pushed);
  OFF(jobring_stats, claimed);
  OFF(jobring_stats, acked);
  OFF(jobring_stats, released);
  OFF(jobring_stats, expired_total);
  OFF(jobring_stats, dead_lettered);
  OFF(jobring_stats, requeued);
  OFF(jobring_stats, purged);
  OFF(jobring_stats, recovered_writes);
  OFF(jobring_stats, reclaimed);
  OFF(jobring_stats, duplicates);
  OFF(jobring_stats, keys_evicted);
  OFF(jobring_stats, keys_full);
  OFF(jobring_stats, moved_out);
  OFF(jobring_stats, moved_in);
  OFF(jobring_stats, paused);
  OFF(jobring_stats, recoveries);
  OFF(jobring_stats, recovered_leases);
  OFF(jobring_stats, recovered_boot_writes);
  OFF(jobring_stats, sync_errors);

  SIZE(jobring_job_info);
  OFF(jobring_job_info, id);
  OFF(jobring_job_info, state);
  OFF(jobring_job_info, slot);
  OFF(jobring_job_info, attempts);
  OFF(jobring_job_info, owner_pid);
  OFF(jobring_job_info, ms_until);
  OFF(jobring_job_info, enqueued_ms_ago);
  OFF(jobring_job_info, failed_ms_ago);
  OFF(jobring_job_info, error_len);
  OFF(jobring_job_info, error);
  OFF(jobring_job_info, payload_len);
  OFF(jobring_job_info, payload_offset);
  OFF(jobring_job_info, payload_copied);
  return 0;
}
