// pgshift's own statements around a mirror, shared by the coordinator's
// files (mirror_coordinator.cc, mirror_apply.cc).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "protocol/error_fields.h"

namespace pgshift::proxy::mirror_sql {

// A statement that fails, leaving the transaction aborted as the client's
// failed statement would have; its text says why in the server's log.
inline constexpr const char* kAbortTransaction =
    "SELECT 'pgshift: the mirror of this statement failed; transaction aborted'::pg_catalog."
    "regclass";

// Under on_mirror_error = "log", around each apply in the client's
// transaction: a failed apply is undone on the mirror alone.
inline constexpr const char* kSavepoint = "SAVEPOINT pgshift_mirror";
inline constexpr const char* kReleaseSavepoint = "RELEASE SAVEPOINT pgshift_mirror";
inline constexpr const char* kRollbackToSavepoint = "ROLLBACK TO SAVEPOINT pgshift_mirror";
// The client's lock_timeout back after pgshift's bounded one.
inline constexpr const char* kRestoreLockTimeout =
    "SELECT pg_catalog.set_config('lock_timeout', "
    "pg_catalog.current_setting('pgshift.lock_timeout'), true)";

inline protocol::ErrorFields MirrorError(std::string_view code, std::string_view message) {
  return protocol::ErrorFields::Make("ERROR", code, message);
}

// "public.channels, public.posts", for messages.
inline std::string Tables(const std::vector<std::string>& tables) {
  std::string out;
  for (const std::string& t : tables) out = out.empty() ? t : StrCat(out, ", ", t);
  return out;
}

}  // namespace pgshift::proxy::mirror_sql
