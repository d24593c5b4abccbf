#include "migration/verify_range.h"

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "common/json.h"
#include "common/strings.h"
#include "migration/older_transactions.h"
#include "migration/table_pair.h"
#include "routing/state_schema.h"

namespace pgshift::migration {

namespace {

using Clock = std::chrono::steady_clock;
using Params = std::vector<std::optional<std::string>>;
using Key = std::vector<std::string>;

// One side of the comparison: a table, its paired columns and its key.
struct Side {
  PgClient* db;
  std::string table;
  std::vector<std::string> columns;
  std::vector<std::string> key;
  std::vector<std::string> key_order;  // as ORDER BY and comparisons take it (TablePair)
};

class Verifier {
 public:
  // Compares the keys of `range` (migration/range_ledger.h).
  Verifier(const VerifyOptions& options, const TablePair& pair, PgClient& old_db, PgClient& new_db,
           const WorkRange& range, const std::function<absl::Status()>& between)
      : options_(options),
        pair_(pair),
        between_(between),
        old_{&old_db, pair.old_table, pair.old_columns, pair.old_key, pair.old_key_order},
        new_{&new_db, pair.new_table, pair.new_columns, pair.new_key, pair.new_key_order} {
    if (!range.lower.empty()) lower_ = range.lower;
    if (!range.upper.empty()) upper_ = range.upper;
  }

  absl::StatusOr<VerifyReport> Run() {
    report_.table = pair_.config->name;
    auto started = Clock::now();
    std::optional<Key> low = lower_;  // exclusive; none: from the start
    std::set<Key> suspects;           // keys whose range's checksums differ and whose rows do
    while (true) {
      auto high = Boundary(low);  // inclusive; none: to the end
      if (!high.ok()) return high.status();
      auto compared = CompareRange(low, *high, suspects);
      if (!compared.ok()) return compared.status();
      report_.rows += *compared;
      ++report_.ranges;
      Throttle(started);
      if (absl::Status s = between_(); !s.ok()) return s;
      if (*high == upper_) break;
      low = **high;
    }
    // A write between reading old and reading new is not a difference:
    // read the suspects again a moment later, a batch of keys at a time.
    if (!suspects.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::vector<Key> keys;
    keys.assign(suspects.begin(), suspects.end());
    absl::Status compared = Compare(keys, [this](const Key& key, Difference kind) {
      switch (kind) {
        case Difference::kMissing: report_.missing.push_back(KeyText(key)); break;
        case Difference::kExtra: report_.extra.push_back(KeyText(key)); break;
        case Difference::kDifferent: report_.different.push_back(KeyText(key)); break;
      }
      differing_.push_back(key);
    });
    if (!compared.ok()) return compared;
    if (options_.repair && !differing_.empty()) {
      if (absl::Status s = between_(); !s.ok()) return s;
      if (absl::Status s = Repair(); !s.ok()) return s;
      report_.repaired = true;
    }
    report_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    return report_;
  }

 private:
  // For ORDER BY and ranges; equality (IN) takes the plain key, which its
  // index serves.
  std::string KeyList(const Side& side) const { return TablePair::List(side.key_order); }

  enum class Difference : uint8_t { kMissing, kExtra, kDifferent };

  // Reads these keys' rows on both sides, a batch of keys at a time, and
  // calls `on_difference` for each key whose rows differ, keeping what the
  // mirror held (for repair to replace only that).
  absl::Status Compare(const std::vector<Key>& keys,
                       const std::function<void(const Key&, Difference)>& on_difference) {
    const size_t batch = std::max<size_t>(1, std::min<size_t>(1000, 60000 / old_.key.size()));
    for (size_t at = 0; at < keys.size(); at += batch) {
      const std::vector<Key> some(
          keys.begin() + static_cast<std::ptrdiff_t>(at),
          keys.begin() + static_cast<std::ptrdiff_t>(std::min(keys.size(), at + batch)));
      std::map<Key, std::string> xmins;  // the mirror's
      auto old_rows = HashesOf(old_, some, pair_.new_is_authoritative ? &xmins : nullptr);
      if (!old_rows.ok()) return old_rows.status();
      auto new_rows = HashesOf(new_, some, pair_.new_is_authoritative ? nullptr : &xmins);
      if (!new_rows.ok()) return new_rows.status();
      for (const Key& key : some) {
        auto in_old = old_rows->find(key);
        auto in_new = new_rows->find(key);
        if (in_old == old_rows->end() && in_new == new_rows->end()) continue;
        if (in_old != old_rows->end() && in_new != new_rows->end() &&
            in_old->second == in_new->second) {
          continue;
        }
        const auto& mirror_rows = pair_.new_is_authoritative ? *old_rows : *new_rows;
        if (auto held = mirror_rows.find(key); held != mirror_rows.end()) {
          mirror_held_[key] = {held->second, xmins[key]};
        } else {
          mirror_held_.erase(key);
        }
        on_difference(key, in_new == new_rows->end()   ? Difference::kMissing
                           : in_old == old_rows->end() ? Difference::kExtra
                                                       : Difference::kDifferent);
      }
    }
    return absl::OkStatus();
  }

  // The last key of the next range of `chunk` keys after `low`, from old;
  // the work range's end when fewer remain before it (none: the range runs
  // to the end, on both sides).
  absl::StatusOr<std::optional<Key>> Boundary(const std::optional<Key>& low) {
    Params params;
    std::string where = Range(old_, low, upper_, params);
    // Named apart from the key columns, so that ORDER BY orders by value.
    std::string keys;
    for (size_t i = 0; i < old_.key.size(); ++i) {
      keys = StrCat(keys, i ? ", " : "", old_.key[i], "::text AS pgshift_key_", i);
    }
    auto r = old_.db->Exec(StrCat("SELECT ", keys, " FROM ", old_.table, where, " ORDER BY ",
                                  KeyList(old_), " OFFSET ", options_.chunk - 1, " LIMIT 1"),
                           params);
    if (!r.ok()) return r.status();
    if (r->rows.empty()) return upper_;
    Key key;
    for (const auto& v : r->rows[0]) key.push_back(*v);
    return std::optional<Key>(key);
  }

  std::string Above(const Side& side, const std::optional<Key>& low, Params& params) const {
    if (!low) return "";
    for (const std::string& k : *low) params.emplace_back(k);
    return StrCat(" WHERE (", KeyList(side), ") > ", pair_.KeyParams(1));
  }

  std::string Range(const Side& side, const std::optional<Key>& low, const std::optional<Key>& high,
                    Params& params) const {
    std::string where = Above(side, low, params);
    if (!high) return where;
    int first = static_cast<int>(params.size()) + 1;
    for (const std::string& k : *high) params.emplace_back(k);
    return StrCat(where, where.empty() ? " WHERE " : " AND ", "(", KeyList(side),
                  ") <= ", pair_.KeyParams(first));
  }

  // count and checksum of a range on one side.
  absl::StatusOr<std::pair<std::string, std::string>> Checksum(const Side& side,
                                                               const std::optional<Key>& low,
                                                               const std::optional<Key>& high) {
    Params params;
    std::string where = Range(side, low, high, params);
    auto r = side.db->Exec(
        StrCat("SELECT count(*), coalesce(sum(('x' || substr(", TablePair::RowHash(side.columns),
               ", 1, 15))::bit(60)::bigint), 0) FROM ", side.table, where),
        params);
    if (!r.ok()) return r.status();
    return std::make_pair(*r->rows[0][0], *r->rows[0][1]);
  }

  absl::StatusOr<std::map<Key, std::string>> Hashes(const Side& side, const std::optional<Key>& low,
                                                    const std::optional<Key>& high) {
    Params params;
    std::string where = Range(side, low, high, params);
    return HashesWhere(side, where, params);
  }

  // The row hashes of these keys on one side (a key it lacks is absent).
  absl::StatusOr<std::map<Key, std::string>> HashesOf(const Side& side,
                                                      const std::vector<Key>& keys,
                                                      std::map<Key, std::string>* xmins = nullptr) {
    Params params;
    std::string list;
    for (const Key& key : keys) {
      list = StrCat(list, list.empty() ? "" : ", ",
                    pair_.KeyParams(static_cast<int>(params.size()) + 1));
      params.insert(params.end(), key.begin(), key.end());
    }
    return HashesWhere(side, StrCat(" WHERE (", TablePair::List(side.key), ") IN (", list, ")"),
                       params, xmins);
  }

  // `xmins`, if given, gets each row's xmin: the version verify saw.
  absl::StatusOr<std::map<Key, std::string>> HashesWhere(
      const Side& side, const std::string& where, const Params& params,
      std::map<Key, std::string>* xmins = nullptr) {
    std::string keys;
    for (const std::string& k : side.key) keys = StrCat(keys, k, "::text, ");
    auto r = side.db->Exec(StrCat("SELECT ", keys, "xmin::text, ", TablePair::RowHash(side.columns),
                                  " FROM ", side.table, where),
                           params);
    if (!r.ok()) return r.status();
    std::map<Key, std::string> out;
    for (const Row& row : r->rows) {
      Key key;
      for (size_t i = 0; i < side.key.size(); ++i) key.push_back(row[i].value_or(""));
      if (xmins != nullptr) (*xmins)[key] = row[side.key.size()].value_or("");
      out[key] = *row.back();
    }
    return out;
  }

  // Rows of old in the range; differing keys go to `suspects`.
  absl::StatusOr<int64_t> CompareRange(const std::optional<Key>& low,
                                       const std::optional<Key>& high, std::set<Key>& suspects) {
    auto a = Checksum(old_, low, high);
    if (!a.ok()) return a.status();
    auto b = Checksum(new_, low, high);
    if (!b.ok()) return b.status();
    int64_t rows = 0;
    ParseInt(a->first, rows);
    if (*a == *b) return rows;
    ++report_.ranges_by_row;
    auto old_rows = Hashes(old_, low, high);
    if (!old_rows.ok()) return old_rows.status();
    auto new_rows = Hashes(new_, low, high);
    if (!new_rows.ok()) return new_rows.status();
    for (const auto& [key, hash] : *old_rows) {
      auto it = new_rows->find(key);
      if (it == new_rows->end() || it->second != hash) suspects.insert(key);
    }
    for (const auto& [key, hash] : *new_rows) {
      if (!old_rows->contains(key)) suspects.insert(key);
    }
    return rows;
  }

  // Copies each differing key again from the authoritative side, a batch
  // of keys per statement, in one transaction on each side. The
  // authoritative rows are read FOR SHARE and held until the mirror has
  // committed, so a write to them waits for the repair (and is mirrored
  // after it) instead of being overwritten by the row read before it. A key
  // the authoritative side lacks is deleted on the mirror only if the
  // mirror still holds the row verify saw there: a row a mirror wrote since
  // is newer than the repair. Both sides wait for locks at most 5 s (a
  // client transaction may hold rows on both, where neither server sees the
  // deadlock); the repair then starts again.
  //
  // On one database a client statement whose snapshot predates the repair
  // writes the mirror table as that snapshot shows it (its mirrored delete
  // misses a row the repair inserted), so once such transactions have
  // ended the keys are compared again, and repaired again if need be.
  absl::Status Repair() {
    std::vector<Key> keys = differing_;
    for (int round = 1;; ++round) {
      std::string xid;
      for (int attempt = 1;; ++attempt) {
        absl::Status s = TryRepair(keys, xid);
        if (s.ok()) break;
        const std::string state = SqlStateOf(s);
        // 23505: a mirror's insert of the same key committed meanwhile.
        if (attempt == 10 ||
            (state != "55P03" && state != "40P01" && state != "40001" && state != "23505")) {
          return s;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
      }
      if (!pair_.same_database) return absl::OkStatus();
      if (absl::Status s = WaitForOlderTransactions(*new_.db, xid, stderr, "verify --repair");
          !s.ok()) {
        return s;
      }
      std::vector<Key> still;
      if (absl::Status s = Compare(keys, [&](const Key& key, Difference) { still.push_back(key); });
          !s.ok()) {
        return s;
      }
      if (still.empty()) return absl::OkStatus();
      if (round == 5) {
        return absl::AbortedError(
            StrCat(still.size(), " keys of ", pair_.config->name,
                   " differed again after each of 5 repairs, under writes to the same keys; "
                   "run verify --repair again"));
      }
      keys = std::move(still);
    }
  }

  // One repair of `keys`; `xid` is the mirror side's transaction.
  absl::Status TryRepair(const std::vector<Key>& keys, std::string& xid) {
    const Side& from = pair_.new_is_authoritative ? new_ : old_;
    const Side& to = pair_.new_is_authoritative ? old_ : new_;
    auto fail = [&](absl::Status s) {
      to.db->Run("ROLLBACK").IgnoreError();
      from.db->Run("ROLLBACK").IgnoreError();
      return s;
    };
    for (const Side* side : {&from, &to}) {
      if (absl::Status s = side->db->Run("BEGIN"); !s.ok()) return fail(s);
      if (absl::Status s = side->db->Run("SET LOCAL lock_timeout = '5s'"); !s.ok()) return fail(s);
    }
    // Entries of the divergence log (mirror errors logged instead of
    // failing the client) for these keys, cleared first: each one's write
    // has committed, so the rows read after it include it.
    if (absl::Status s = ClearDivergence(keys); !s.ok()) return fail(s);
    const size_t width = std::max(to.columns.size(), to.key.size()) + 1;
    const size_t batch = std::max<size_t>(1, std::min<size_t>(1000, 60000 / width));
    for (size_t at = 0; at < keys.size(); at += batch) {
      const std::vector<Key> some(
          keys.begin() + static_cast<std::ptrdiff_t>(at),
          keys.begin() + static_cast<std::ptrdiff_t>(std::min(keys.size(), at + batch)));
      if (absl::Status s = RepairKeys(from, to, some); !s.ok()) return fail(s);
    }
    auto current = to.db->Exec("SELECT pg_catalog.xid(pg_catalog.pg_current_xact_id())::text");
    if (!current.ok()) return fail(current.status());
    xid = *current->rows[0][0];
    if (absl::Status s = to.db->Run("COMMIT"); !s.ok()) return fail(s);
    return from.db->Run("COMMIT");
  }

  absl::Status RepairKeys(const Side& from, const Side& to, const std::vector<Key>& keys) {
    const bool to_new = &to == &new_;
    std::vector<std::vector<std::string>> key_rows(keys.begin(), keys.end());
    std::string key_text;
    for (size_t i = 0; i < from.key.size(); ++i) key_text += StrCat(from.key[i], "::text, ");
    auto rows = from.db->Exec(
        StrCat("SELECT ", key_text, TablePair::List(from.columns), " FROM ", from.table, " WHERE (",
               TablePair::List(from.key), ") IN (", pair_.KeysFromJson(1, !to_new), ") FOR SHARE"),
        {TablePair::KeysJson(key_rows)});
    if (!rows.ok()) return rows.status();
    std::set<Key> present;
    for (const Row& row : rows->rows) {
      Key key;
      for (size_t i = 0; i < from.key.size(); ++i) key.push_back(*row[i]);
      present.insert(std::move(key));
    }
    // The keys the authoritative side has: replaced. The others: deleted
    // where the mirror still holds what verify saw.
    std::vector<std::vector<std::string>> replaced, stale;
    for (const Key& key : keys) {
      if (present.contains(key)) {
        replaced.push_back(key);
      } else if (auto held = mirror_held_.find(key); held != mirror_held_.end()) {
        std::vector<std::string> as_seen = key;
        as_seen.push_back(StrCat(held->second.hash, " ", held->second.xmin));
        stale.push_back(std::move(as_seen));
      }
    }
    if (!replaced.empty()) {
      absl::Status s =
          to.db->Run(StrCat("DELETE FROM ", to.table, " WHERE (", TablePair::List(to.key), ") IN (",
                            pair_.KeysFromJson(1, to_new), ")"),
                     {TablePair::KeysJson(replaced)});
      if (!s.ok()) return s;
    }
    if (!stale.empty()) {
      // The key's columns, then the row hash and version verify saw: a row
      // written since (even with the same content) is newer than the repair.
      absl::Status s = to.db->Run(
          StrCat("DELETE FROM ", to.table, " WHERE (", TablePair::List(to.key), ", ",
                 TablePair::RowHash(to.columns), " || ' ' || xmin::pg_catalog.text) IN (",
                 pair_.KeysFromJson(1, to_new, true), ")"),
          {TablePair::KeysJson(stale)});
      if (!s.ok()) return s;
    }
    Params values;
    std::string tuples;
    for (const Row& row : rows->rows) {
      Key key;
      for (size_t i = 0; i < from.key.size(); ++i) key.push_back(row[i].value_or(""));
      // A key spelled otherwise on the two sides (its type changed) was not
      // deleted above: its row is left for the next verify to name.
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) continue;
      std::string placeholders;
      for (size_t i = from.key.size(); i < row.size(); ++i) {
        values.push_back(row[i]);
        placeholders += StrCat(i > from.key.size() ? ", " : "", "$", values.size());
      }
      tuples += StrCat(tuples.empty() ? "" : ", ", "(", placeholders, ")");
    }
    if (tuples.empty()) return absl::OkStatus();
    return to.db->Run(StrCat("INSERT INTO ", to.table, " (", TablePair::List(to.columns),
                             ") OVERRIDING SYSTEM VALUE VALUES ", tuples),
                      values);
  }

  // The divergence log is on the authoritative side of the time: old, or
  // new from new-primary on; a log on either is cleared of the keys.
  absl::Status ClearDivergence(const std::vector<Key>& repaired) {
    std::vector<std::string> keys;
    for (const Key& k : repaired) keys.push_back(KeyText(k));
    std::vector<PgClient*> databases{old_.db};
    if (!pair_.same_database) databases.push_back(new_.db);
    for (PgClient* db : databases) {
      auto log = db->Exec("SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                          {std::string(routing::kDivergenceTable)});
      if (!log.ok()) return log.status();
      if (*log->rows[0][0] != "t") continue;
      if (absl::Status s =
              db->Run(StrCat("DELETE FROM ", routing::kDivergenceTable,
                             " WHERE table_name = $1 AND key IN (SELECT "
                             "pg_catalog.jsonb_array_elements_text($2::pg_catalog.jsonb))"),
                      {pair_.config->name, JsonArray(keys)});
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  void Throttle(Clock::time_point started) {
    if (options_.rate <= 0) return;
    auto due = started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                             static_cast<double>(report_.rows) / options_.rate));
    if (due > Clock::now()) std::this_thread::sleep_until(due);
  }

  const VerifyOptions& options_;
  const TablePair& pair_;
  const std::function<absl::Status()>& between_;
  Side old_, new_;
  std::optional<Key> lower_, upper_;  // the work range's bounds
  VerifyReport report_;
  std::vector<Key> differing_;
  // A differing key's row on the mirror, as verify saw it.
  struct Held {
    std::string hash;
    std::string xmin;
  };
  std::map<Key, Held> mirror_held_;
};

}  // namespace

absl::StatusOr<VerifyReport> VerifyRange(const VerifyOptions& options, const TablePair& pair,
                                         PgClient& old_db, PgClient& new_db, const WorkRange& range,
                                         const std::function<absl::Status()>& between) {
  return Verifier(options, pair, old_db, new_db, range, between).Run();
}

}  // namespace pgshift::migration
