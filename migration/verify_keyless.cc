#include "migration/verify_keyless.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/strings.h"

namespace pgshift::migration {

namespace {

using Clock = std::chrono::steady_clock;
// Rows of differing buckets read per pass over each table.
constexpr int64_t kRowsPerPass = 200000;
using Params = std::vector<std::optional<std::string>>;

struct Side {
  PgClient* db;
  std::string table;
  std::vector<std::string> columns;
};

// How many copies of one row each side holds.
struct Copies {
  int64_t old_side = 0;
  int64_t new_side = 0;
};

class KeylessVerifier {
 public:
  KeylessVerifier(const VerifyOptions& options, const TablePair& pair, PgClient& old_db,
                  PgClient& new_db)
      : options_(options),
        pair_(pair),
        old_{&old_db, pair.old_table, pair.old_columns},
        // One database: one connection, so that one snapshot covers both.
        new_{pair.same_database ? &old_db : &new_db, pair.new_table, pair.new_columns} {}

  // On one database both sides are read, and repaired, in one snapshot
  // (REPEATABLE READ): a mirrored insert is in both tables or in neither.
  absl::StatusOr<VerifyReport> Run() {
    if (!one_snapshot_) return Compare();
    if (absl::Status s = old_.db->Run("BEGIN ISOLATION LEVEL REPEATABLE READ"); !s.ok()) return s;
    auto report = Compare();
    if (!report.ok()) {
      old_.db->Run("ROLLBACK").IgnoreError();
      return report;
    }
    if (absl::Status s = old_.db->Run("COMMIT"); !s.ok()) return s;
    return report;
  }

 private:
  absl::StatusOr<VerifyReport> Compare() {
    report_.table = pair_.config->name;
    const auto started = Clock::now();
    auto old_buckets = Buckets(old_);
    if (!old_buckets.ok()) return old_buckets.status();
    auto new_buckets = Buckets(new_);
    if (!new_buckets.ok()) return new_buckets.status();
    std::map<std::string, Copies> suspects;  // row hash -> copies
    std::map<std::string, bool> buckets;
    for (const auto& [bucket, sums] : *old_buckets) {
      ParseAdd(sums.first, report_.rows);
      buckets[bucket] = true;
    }
    for (const auto& [bucket, sums] : *new_buckets) buckets[bucket] = true;
    report_.ranges = static_cast<int64_t>(buckets.size());
    // The differing buckets, read row hash by row hash in groups of about
    // kRowsPerPass rows: one pass over each table per group (not per
    // bucket), and no more than a group's hashes held at once besides the
    // ones that differ.
    std::vector<std::string> group;
    int64_t group_rows = 0;
    auto flush = [&]() -> absl::Status {
      if (group.empty()) return absl::OkStatus();
      absl::Status s = Count(
          " WHERE pg_catalog.substr(h, 1, 2) IN (SELECT "
          "pg_catalog.jsonb_array_elements_text($1::pg_catalog.jsonb))",
          {JsonArray(group)}, suspects);
      std::erase_if(suspects, [](const auto& entry) {
        return entry.second.old_side == entry.second.new_side;
      });
      group.clear();
      group_rows = 0;
      return s;
    };
    for (const auto& [bucket, unused] : buckets) {
      auto in_old = old_buckets->find(bucket);
      auto in_new = new_buckets->find(bucket);
      if (in_old != old_buckets->end() && in_new != new_buckets->end() &&
          in_old->second == in_new->second) {
        continue;
      }
      ++report_.ranges_by_row;
      int64_t old_rows = 0, new_rows = 0;
      if (in_old != old_buckets->end()) ParseAdd(in_old->second.first, old_rows);
      if (in_new != new_buckets->end()) ParseAdd(in_new->second.first, new_rows);
      group.push_back(bucket);
      group_rows += std::max(old_rows, new_rows);
      if (group_rows >= kRowsPerPass) {
        if (absl::Status s = flush(); !s.ok()) return s;
      }
    }
    if (absl::Status s = flush(); !s.ok()) return s;
    std::vector<std::string> hashes;
    for (const auto& [hash, copies] : suspects) {
      if (copies.old_side != copies.new_side) hashes.push_back(hash);
    }
    std::map<std::string, int64_t> lacking;  // row hash -> copies new lacks (< 0: extra)
    if (one_snapshot_) {
      for (const std::string& hash : hashes) {
        lacking[hash] = suspects[hash].old_side - suspects[hash].new_side;
      }
    } else {
      // Across servers the sides are read one after the other, so a row in
      // flight between the reads looks like a difference: only what
      // differs again a moment later, and as much as it did both times,
      // is one.
      if (!hashes.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      std::map<std::string, Copies> again;
      for (size_t at = 0; at < hashes.size(); at += 1000) {
        std::vector<std::string> some(
            hashes.begin() + static_cast<std::ptrdiff_t>(at),
            hashes.begin() + static_cast<std::ptrdiff_t>(std::min(hashes.size(), at + 1000)));
        if (absl::Status s = Count(" WHERE h IN (SELECT pg_catalog.jsonb_array_elements_text($1::"
                                   "pg_catalog.jsonb))",
                                   {JsonArray(some)}, again);
            !s.ok()) {
          return s;
        }
      }
      for (const std::string& hash : hashes) {
        const int64_t first = suspects[hash].old_side - suspects[hash].new_side;
        const int64_t second = again[hash].old_side - again[hash].new_side;
        if ((first > 0) != (second > 0) || second == 0) continue;
        lacking[hash] = first > 0 ? std::min(first, second) : std::max(first, second);
      }
    }
    for (const auto& [hash, n] : lacking) {
      const std::string entry =
          StrCat("row ", hash, n > 1 || n < -1 ? StrCat(" x", n > 0 ? n : -n) : "");
      (n > 0 ? report_.missing : report_.extra).push_back(entry);
    }
    differing_ = std::move(lacking);
    if (options_.repair && !differing_.empty()) {
      if (absl::Status s = Repair(); !s.ok()) return s;
      report_.repaired = true;
    }
    report_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    return report_;
  }

  static void ParseAdd(const std::string& text, int64_t& total) {
    int64_t n = 0;
    ParseInt(text, n);
    total += n;
  }

  std::string Hashed(const Side& side) const {
    return StrCat("(SELECT ", TablePair::RowHash(side.columns), " AS h FROM ", side.table, ") s");
  }

  // Bucket -> (count, checksum) on one side.
  absl::StatusOr<std::map<std::string, std::pair<std::string, std::string>>> Buckets(
      const Side& side) {
    auto r = side.db->Exec(StrCat(
        "SELECT pg_catalog.substr(h, 1, 2), count(*), sum(('x' || pg_catalog.substr(h, 3, 15))"
        "::bit(60)::bigint) FROM ",
        Hashed(side), " GROUP BY 1"));
    if (!r.ok()) return r.status();
    std::map<std::string, std::pair<std::string, std::string>> out;
    for (const Row& row : r->rows) out[*row[0]] = {*row[1], *row[2]};
    return out;
  }

  // Copies of each row hash matching `where`, on both sides.
  absl::Status Count(const std::string& where, const Params& params,
                     std::map<std::string, Copies>& out) {
    for (const Side* side : {&old_, &new_}) {
      auto r = side->db->Exec(
          StrCat("SELECT h, count(*) FROM ", Hashed(*side), where, " GROUP BY h"), params);
      if (!r.ok()) return r.status();
      for (const Row& row : r->rows) {
        Copies& copies = out[*row[0]];
        ParseInt(*row[1], side == &old_ ? copies.old_side : copies.new_side);
      }
    }
    return absl::OkStatus();
  }

  // On the mirror, in one transaction (on one database, verify's): the
  // copies it lacks, read from the authoritative side, and the ones it has
  // too many of, deleted.
  absl::Status Repair() {
    const bool to_old = pair_.new_is_authoritative;
    const Side& from = to_old ? new_ : old_;
    const Side& to = to_old ? old_ : new_;
    auto fail = [&](absl::Status s) {
      if (!one_snapshot_) to.db->Run("ROLLBACK").IgnoreError();
      return s;
    };
    if (!one_snapshot_) {
      if (absl::Status s = to.db->Run("BEGIN"); !s.ok()) return s;
    }
    for (const auto& [hash, new_lacks] : differing_) {
      const int64_t lacking = to_old ? -new_lacks : new_lacks;
      if (lacking < 0) {
        absl::Status s = to.db->Run(
            // tableoid with ctid: a partition's ctid is not unique in the whole.
            StrCat("DELETE FROM ", to.table,
                   " WHERE (tableoid, ctid) IN (SELECT tableoid, ctid "
                   "FROM ",
                   to.table, " WHERE ", TablePair::RowHash(to.columns), " = $1 LIMIT ", -lacking,
                   ")"),
            {hash});
        if (!s.ok()) return fail(s);
        continue;
      }
      auto rows = from.db->Exec(
          StrCat("SELECT ", TablePair::List(from.columns), " FROM ", from.table, " WHERE ",
                 TablePair::RowHash(from.columns), " = $1 LIMIT ", lacking),
          {hash});
      if (!rows.ok()) return fail(rows.status());
      for (const Row& row : rows->rows) {
        std::string placeholders;
        for (size_t i = 0; i < row.size(); ++i) {
          placeholders += StrCat(i ? ", " : "", "$", i + 1);
        }
        absl::Status s =
            to.db->Run(StrCat("INSERT INTO ", to.table, " (", TablePair::List(to.columns),
                              ") OVERRIDING SYSTEM VALUE VALUES (", placeholders, ")"),
                       Params(row.begin(), row.end()));
        if (!s.ok()) return fail(s);
      }
    }
    return one_snapshot_ ? absl::OkStatus() : to.db->Run("COMMIT");
  }

  const VerifyOptions& options_;
  const TablePair& pair_;
  Side old_, new_;
  VerifyReport report_;
  // Row hash -> copies the new side lacks (negative: has too many).
  std::map<std::string, int64_t> differing_;
  const bool one_snapshot_ = pair_.same_database;
};

}  // namespace

absl::StatusOr<VerifyReport> VerifyKeyless(const VerifyOptions& options, const TablePair& pair,
                                           PgClient& old_db, PgClient& new_db) {
  return KeylessVerifier(options, pair, old_db, new_db).Run();
}

}  // namespace pgshift::migration
