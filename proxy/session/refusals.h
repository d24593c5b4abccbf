// A refusal is raised by the server itself, so that it lands in its place
// among the replies and leaves the transaction exactly as any error would:
// pgshift sends, in place of the refused statement, a probe that fails at
// parse time naming a relation no one has, and replaces the server's error
// with its own. The relation's name carries a per-process nonce and the
// refusal's number.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/error_fields.h"

namespace pgshift::proxy {

class Refusals {
 public:
  // Add keeps at most this many in flight, dropping the oldest. Set does
  // not trim: it fills in a number reserved at planning time (a COMMIT's
  // stand-in), which is usually the oldest and is about to be sent.
  static constexpr size_t kMaxPending = 64;

  // A number for a probe whose error is given later, or never (Set).
  uint64_t Reserve() { return ++next_; }
  void Set(uint64_t n, protocol::ErrorFields error);
  // Reserve and Set in one: the probe's number.
  uint64_t Add(protocol::ErrorFields error);

  // The probe's statement, and the name it gives its relation.
  static std::string ProbeSql(uint64_t n);
  static std::string ProbeName(uint64_t n);
  // The statement name of an extended-protocol probe's Parse.
  static std::string ProbeStatementName();

  // The error that replaces the server's `message`, when it is a pending
  // probe's; that refusal and older ones are done.
  std::optional<protocol::ErrorFields> Take(std::string_view message);
  bool empty() const { return pending_.empty(); }

 private:
  std::map<uint64_t, protocol::ErrorFields> pending_;
  uint64_t next_ = 0;
};

}  // namespace pgshift::proxy
