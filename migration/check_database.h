// pgshift check-config --against-database: the configuration checked
// against the databases it names, table by table, before a phase moves on.
#pragma once

#include <cstdio>

#include "absl/status/statusor.h"
#include "routing/config.h"

namespace pgshift::migration {

// Prints, per table: both tables exist, new has a unique index on the key
// (the mirror's upsert needs it), where old's columns go (renamed, or
// dropped), column types that differ, the writes that reach it unseen
// (routing/hidden_writes.h) on old (and new, from new-primary on), and
// what its next phase needs. True when nothing fails.
absl::StatusOr<bool> CheckAgainstDatabase(const routing::Config& config, std::FILE* out);

}  // namespace pgshift::migration
