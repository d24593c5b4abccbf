// The command line's view of the running instance a configuration file
// describes, asked on its admin console (proxy.admin_listen) as the file's
// first admin user (with PGPASSWORD when set): without coordination, what
// lives only in its memory. The phases it runs (an edited file may not be
// reloaded yet), each table's shadow counts since it entered its phase (the
// guard rail's evidence), and the statement shapes it has seen.
#pragma once

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "proxy/asio.h"
#include "proxy/coordinator.h"
#include "proxy/migration_state.h"
#include "routing/config.h"
#include "routing/query_fingerprints.h"

namespace pgshift::proxy {

struct InstanceView {
  std::string address;  // host:port asked
  SharedPhases phases;
  absl::flat_hash_map<std::string, ShadowEvidence> evidence;
  std::vector<routing::QueryFingerprints::Row> shapes;  // when asked for
};

// SHOW TABLES (and, with `shapes`, SHOW QUERIES) on the instance's console.
absl::StatusOr<InstanceView> AskInstance(const routing::Config& file, asio::ssl::context& tls,
                                         bool shapes);

// A shape from one row of text columns: fingerprint (first), query and
// tables (as "a, b") at the given places.
routing::QueryFingerprints::Row ShapeOf(const std::vector<std::optional<std::string>>& row,
                                        size_t query, size_t tables, bool writes);

}  // namespace pgshift::proxy
