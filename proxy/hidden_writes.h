// The ways a migrating table is written without a statement naming it,
// which row mirroring cannot see: a foreign key's ON DELETE / ON UPDATE
// action from its parent, triggers (on the table, but for BEFORE ROW ones,
// whose change is in the row mirrored; or whose function is known to
// depend on it), rules, and updatable views over it. Read from a
// side's catalog when a table moves into a mirrored phase (the move is
// refused while one exists) and at start (reported).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/asio.h"
#include "routing/config.h"

namespace pgshift::proxy {

struct HiddenWritePath {
  std::string what;    // e.g. "trigger audit on public.posts"
  std::string remedy;  // what the operator can do about it
};

// The paths to `table` on old (`on_new` false) or new, leaving out a
// foreign key whose parent is mirrored too (its deletes reach both sides,
// and cascade on each).
awaitable<absl::StatusOr<std::vector<HiddenWritePath>>> FindHiddenWritePaths(
    const routing::Config& config, const routing::TableConfig& table, bool on_new,
    asio::ssl::context& tls);

// "trigger a on public.t (disable it on one side ...); rule ..."
std::string DescribeHiddenWritePaths(const std::vector<HiddenWritePath>& paths);

}  // namespace pgshift::proxy
