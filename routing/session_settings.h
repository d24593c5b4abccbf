// The settings a client changes in its session (SET, RESET, DISCARD ALL).
// Its startup parameters reach every server, but such a statement runs on
// one server (old) only; a second server that answers for the session must
// be brought to the same state first, or a read served there would see
// another search_path, TimeZone or client_encoding than the client set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgshift::routing {

struct SettingChange {
  enum Kind {
    kSession,      // SET or RESET of one setting, for the session
    kTransaction,  // SET LOCAL, SET TRANSACTION: for the current transaction only
    kResetAll,     // RESET ALL: every setting but the role back to its default
    kDiscardAll,   // DISCARD ALL: every setting and the role
  };
  Kind kind = kSession;
  // Identifies what it sets: a later change with the same key and kind
  // makes this one redundant.
  std::string key;
  std::string sql;  // the statement as the client wrote it
  // A BEGIN's transaction modes, as SET TRANSACTION: they belong to the
  // transaction it opens.
  bool opens_transaction = false;
};

// False when `sql` certainly changes no setting: a look at the first word
// of each statement that spares parsing the others (an UPDATE's SET too).
bool MayChangeSettings(std::string_view sql);

// False when `sql` certainly does not begin with BEGIN or START TRANSACTION
// (the same look at the first word; the router's plan says for sure).
bool MayBeginTransaction(std::string_view sql);

// False when `sql` certainly does not begin with COMMIT or ROLLBACK (as
// COMMIT PREPARED and ROLLBACK PREPARED do, outside any transaction).
bool MayFinishPrepared(std::string_view sql);

// The setting changes among the statements of `sql`, in order (none for a
// syntax error: the server rejects the text anyway). A BEGIN with
// transaction modes counts as their SET TRANSACTION.
std::vector<SettingChange> SettingChangesOf(std::string_view sql);

// A session's setting changes, as statements that bring a second server to
// the state the client put its first server in.
class SessionSettings {
 public:
  // `in_transaction`: made inside a transaction block, so it stands only if
  // the transaction commits.
  void Record(SettingChange change, bool in_transaction);
  // The transaction ended: its session-level changes stand if it committed.
  void EndTransaction(bool committed);

  // Changes whenever the session-level state does.
  uint64_t version() const { return version_; }
  // What the recorded changes hold, about (for client_state_max_bytes),
  // and how many there are (for kMaxChanges).
  size_t bytes() const { return bytes_; }
  size_t changes() const { return session_.size() + transaction_sql_.size(); }
  // Recording is linear in the changes kept: more are refused, so a client
  // cannot make it quadratic.
  static constexpr size_t kMaxChanges = 10000;
  static size_t Bytes(const SettingChange& change) {
    return sizeof(change) + change.key.size() + change.sql.size();
  }
  // Run outside a transaction, these give a server the session-level state
  // (whatever changes it had before).
  std::vector<std::string> SessionStatements() const;
  // The current transaction's changes, in order: a server that joins the
  // transaction runs them after its BEGIN.
  const std::vector<std::string>& TransactionStatements() const { return transaction_sql_; }

 private:
  // Keeps `changes` free of a change that a later one overrides.
  static void Append(std::vector<SettingChange>& changes, SettingChange change);
  void Apply(SettingChange change);
  void Recount();

  std::vector<SettingChange> session_;      // standing changes, in order
  std::vector<SettingChange> transaction_;  // the current transaction's
  std::vector<std::string> transaction_sql_;
  bool role_reset_ = false;  // DISCARD ALL undid a SET ROLE or SESSION AUTHORIZATION
  uint64_t version_ = 0;
  size_t bytes_ = 0;
};

}  // namespace pgshift::routing
