// pgshift verify: compares old and new by key ranges. Each range's rows are
// summed into a checksum inside each database (md5 of the row's paired
// columns, renames applied); ranges whose checksums differ are compared
// key by key. Keys that still differ when read again a moment later (a
// write in flight between the two reads is not a difference) are reported
// as missing (in old, not in new), extra (in new, not in old) or different.
// --repair copies those rows again from the authoritative side. Workers
// (--jobs, and commands on other machines) share the key ranges of
// migration/range_ledger.h; each range's report waits in its row until
// every range is done, and every command of the run reports the whole
// table. The result is recorded in pgshift_state once.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "routing/config.h"

namespace pgshift::migration {

struct VerifyOptions {
  int64_t chunk = 1000;  // keys per checksummed range
  double rate = 0;       // rows per second at most; 0: no limit
  bool repair = false;
  bool json = false;     // the report as one JSON object
  // Workers and leases as for backfill (BackfillOptions): the first command
  // splits the table into key ranges, later ones join while it runs.
  int64_t jobs = 1;
  int64_t lease_seconds = 60;
};

struct VerifyReport {
  std::string table;
  int64_t rows = 0;    // rows of old compared
  int64_t ranges = 0;  // ranges checksummed
  int64_t ranges_by_row = 0;  // of those, whose checksums differed: compared row by row
  std::vector<std::string> missing, extra, different;  // keys, as text
  bool repaired = false;
  double seconds = 0;

  size_t differences() const { return missing.size() + extra.size() + different.size(); }
};

absl::StatusOr<VerifyReport> Verify(const routing::Config& config, const std::string& table,
                                    const VerifyOptions& options);

// The report for people, or as JSON.
void PrintReport(const VerifyReport& report, bool json, std::FILE* out);

}  // namespace pgshift::migration
