#include "migration/backfill_range.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

#include "common/strings.h"
#include "migration/older_transactions.h"

namespace pgshift::migration {

namespace {

using Clock = std::chrono::steady_clock;
using Params = std::vector<std::optional<std::string>>;

// One worker's copy of one key range (migration/range_ledger.h), batch by
// batch from its checkpoint.
class Backfiller {
 public:
  Backfiller(const RangeWorker& worker, const WorkRange& range)
      : out_(worker.out),
        old_db_(worker.old_db),
        new_db_(worker.new_db),
        pair_(worker.pair),
        ledger_(worker.ledger),
        range_(range),
        pace_(worker.pace),
        stop_(worker.stop),
        state_(worker.old_db) {}

  // Copies the range to its end and marks it done.
  absl::Status Run() {
    const std::string& table = pair_.config->name;
    auto saved = state_.LoadCheckpoint(ledger_, range_.id);
    if (!saved.ok()) return saved.status();
    Checkpoint checkpoint = *saved;
    if (absl::Status s = FinishStopped(checkpoint); !s.ok()) return s;
    if (checkpoint.rows > 0) {
      std::fprintf(out_, "pgshift backfill: %s %s resumes after key %s (%lld rows read before)\n",
                   table.c_str(), range_.Name().c_str(), KeyText(checkpoint.last_key).c_str(),
                   static_cast<long long>(checkpoint.rows));
    } else {
      checkpoint.last_key = range_.lower;
    }
    const int64_t estimate = EstimateRows() / std::max<int64_t>(1, range_.count);
    const int64_t start_rows = checkpoint.rows;
    const auto started = Clock::now();
    while (!stop_) {
      if (absl::Status s = pace_.WaitWhileUnderPressure(); !s.ok()) return s;
      std::vector<std::string> before = checkpoint.last_key;
      const auto batch_started = Clock::now();
      auto batch = CopyBatch(checkpoint);
      if (!batch.ok()) return batch.status();
      if (batch->read == 0) break;
      pace_.Adapt(Clock::now() - batch_started);
      if (absl::Status s = RemoveDeletedMeanwhile(before, checkpoint.last_key, *batch); !s.ok()) {
        return s;
      }
      // The sweep may have waited long for older transactions.
      if (absl::Status s = ledger_.RenewIfDue(range_); !s.ok()) return s;
      checkpoint.rows += batch->read;
      checkpoint.copied += batch->copied;
      double seconds = std::chrono::duration<double>(Clock::now() - started).count();
      double rate = seconds > 0 ? static_cast<double>(checkpoint.rows - start_rows) / seconds : 0;
      checkpoint.rate = static_cast<int64_t>(rate);  // saved with the next batch
      pace_.Report(checkpoint, batch->copied, rate, estimate, range_);
      pace_.Throttle(checkpoint.rows - start_rows, started);
    }
    if (stop_) return absl::CancelledError("stopped");
    checkpoint.done = true;
    checkpoint.rate = 0;
    return ledger_.Save(range_, CheckpointJson(checkpoint));
  }

  // Only the sweep of a batch stopped before it, if any (--restart).
  absl::Status SweepStopped() {
    auto saved = state_.LoadCheckpoint(ledger_, range_.id);
    if (!saved.ok()) return saved.status();
    return FinishStopped(*saved);
  }

 private:
  // A batch stopped before its sweep is finished first, --restart or not:
  // later sweeps remove only their own batches' copies.
  absl::Status FinishStopped(Checkpoint& checkpoint) {
    if (!checkpoint.sweep) return absl::OkStatus();
    return FinishStoppedBatch(checkpoint);
  }

  struct BatchResult {
    int64_t read = 0;
    int64_t copied = 0;
    std::string xid;  // the batch's transaction on old
    // Across servers, its transaction on new (as xid8): the rows it
    // inserted there carry it as their xmin until a later write replaces
    // them.
    std::string copy_xid;
  };

  // The last run stopped between a batch's commit on old and its sweep:
  // sweep it; when its copy did not commit on new (or new no longer knows:
  // pg_xact_status is NULL past its clog), copy the batch again too.
  absl::Status FinishStoppedBatch(Checkpoint& checkpoint) {
    const PendingSweep stopped = *checkpoint.sweep;
    checkpoint.sweep.reset();
    const std::string& table = pair_.config->name;
    bool copied = true;
    if (!pair_.same_database) {
      if (stopped.copy_xid.empty()) {
        // Saved on one database, whose copies only that topology sweeps.
        std::fprintf(out_,
                     "pgshift backfill: %s: its last batch was copied on one database and "
                     "is not swept here; verify finds what that sweep would have removed\n",
                     table.c_str());
        return absl::OkStatus();
      }
      auto status = new_db_->Exec("SELECT pg_catalog.pg_xact_status($1::pg_catalog.xid8)",
                                  {stopped.copy_xid});
      if (!status.ok()) return status.status();
      const std::string state = status->rows[0][0].value_or("");
      if (state == "in progress") {
        return absl::UnavailableError(StrCat(
            "the last run's copy of a batch of ", table, " (transaction ", stopped.copy_xid,
            ") is still open on new; try again once new has ended it (pg_terminate_backend on "
            "new's session of application pgshift backfill, if that run is gone)"));
      }
      copied = state == "committed";
    }
    std::fprintf(out_, "pgshift backfill: %s sweeps its last batch first\n", table.c_str());
    BatchResult batch;
    batch.xid = stopped.old_xid;
    batch.copy_xid = stopped.copy_xid;
    if (absl::Status s = RemoveDeletedMeanwhile(stopped.after, checkpoint.last_key, batch);
        !s.ok()) {
      return s;
    }
    if (!copied) {
      std::fprintf(out_,
                   "pgshift backfill: %s copies its last batch again (its copy did not "
                   "commit on new)\n",
                   table.c_str());
      checkpoint.last_key = stopped.after;
      checkpoint.rows -= stopped.read;
    }
    return absl::OkStatus();
  }

  int64_t EstimateRows() {
    auto r = old_db_.Exec(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_catalog.pg_class WHERE oid = "
        "$1::pg_catalog.regclass",
        {pair_.old_table});
    int64_t n = 0;
    if (r.ok() && !r->rows.empty() && r->rows[0][0]) ParseInt(*r->rows[0][0], n);
    return n;
  }

  // The keyset condition after the checkpoint, up to the range's end, and
  // its parameters (the checkpoint's key first, from $1).
  std::string After(const Checkpoint& c, Params& params) const {
    std::string range = KeyRange(pair_.old_key_order, c.last_key, range_.upper, params);
    return range.empty() ? "" : StrCat(" WHERE ", range);
  }

  // The key as text, named apart from the key columns so that ORDER BY
  // the key still orders by the values.
  std::string KeyColumnsAsText() const {
    std::string out;
    for (size_t i = 0; i < pair_.old_key.size(); ++i) {
      out = StrCat(out, i ? ", " : "", pair_.old_key[i], "::text AS pgshift_key_", i);
    }
    return out;
  }

  // A batch that lost a race for a key to a mirrored insert (23505) runs
  // again with ON CONFLICT DO NOTHING: about half as fast as a plain
  // insert of the rows new lacks, which every batch tries first.
  absl::StatusOr<BatchResult> CopyBatch(Checkpoint& checkpoint) {
    bool careful = false;
    for (int attempt = 1;; ++attempt) {
      const std::vector<std::string> before = checkpoint.last_key;
      auto result = pair_.same_database ? CopyBatchInOneDatabase(checkpoint, careful)
                                        : CopyBatchAcrossServers(checkpoint, careful);
      if (result.ok() || attempt == 10) return result;
      // Past old's commit (new's failed): the next run copies it again.
      if (checkpoint.last_key != before) return result;
      std::string state = SqlStateOf(result.status());
      if (state == "23505" && !careful) {
        careful = true;
        continue;
      }
      if (state != "55P03" && state != "40P01" && state != "40001") return result;
      std::fprintf(out_, "pgshift backfill: %s batch retried (%s)\n", pair_.config->name.c_str(),
                   std::string(MessageOf(result.status())).c_str());
      std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
    }
  }

  // One side's key (`key_order`) in (after, last], the bounds as parameters
  // added to `params`.
  std::string KeyRange(const std::vector<std::string>& key_order,
                       const std::vector<std::string>& after, const std::vector<std::string>& last,
                       Params& params) const {
    std::string range;
    for (const auto* bound : {&after, &last}) {
      if (bound->empty()) continue;
      const int first = static_cast<int>(params.size()) + 1;
      for (const std::string& k : *bound) params.emplace_back(k);
      range = StrCat(range, range.empty() ? "" : " AND ", "(", TablePair::List(key_order),
                     bound == &after ? ") > " : ") <= ", pair_.KeyParams(first));
    }
    return range;
  }

  // On one database the batch's last key is known only inside its
  // statement: the range ends at the CTE batch's greatest key. It starts
  // after the checkpoint's key, if any: the statement's parameters from $1.
  std::string NewRangeOfBatch(bool from_checkpoint) const {
    return StrCat(!from_checkpoint ? ""
                                   : StrCat("(", TablePair::List(pair_.new_key_order), ") > ",
                                            pair_.KeyParams(1), " AND "),
                  "(", TablePair::List(pair_.new_key_order), ") <= (SELECT ",
                  TablePair::List(pair_.old_key_order), " FROM batch ORDER BY ",
                  Descending(pair_.old_key_order), " LIMIT 1)");
  }

  // How a batch's rows go into new, from `rows` (its columns named as
  // `columns`, its key as `key`, ordered as new's is compared): only those whose key new lacks,
  // looked up among new's rows of the batch's key range (`new_range`, a condition on new's key);
  // `careful`, also when a mirrored insert of the same key commits meanwhile
  // (ON CONFLICT: `new_range` is not used).
  std::string InsertRows(std::string_view rows, const std::vector<std::string>& columns,
                         const std::vector<std::string>& key, std::string_view new_range,
                         bool careful) const {
    std::string insert =
        StrCat("INSERT INTO ", pair_.new_table, " (", TablePair::List(pair_.new_columns),
               ") OVERRIDING SYSTEM VALUE SELECT ", TablePair::List(columns, "pgshift_rows."),
               " FROM ", rows, " pgshift_rows");
    if (careful) {
      return StrCat(insert, " ON CONFLICT (", TablePair::List(pair_.new_key), ") DO NOTHING");
    }
    std::string same_key;
    for (size_t i = 0; i < key.size(); ++i) {
      same_key =
          StrCat(same_key, " AND pgshift_new.", pair_.new_key_order[i], " = pgshift_rows.", key[i]);
    }
    return StrCat(insert, " WHERE NOT EXISTS (SELECT FROM ", pair_.new_table, " pgshift_new WHERE ",
                  new_range, same_key, ")");
  }

  // The names of old's values in a row read with pair_.OldSelect().
  std::vector<std::string> OldNames() const {
    std::vector<std::string> names;
    for (size_t i = 0; i < pair_.old_columns.size(); ++i) names.push_back(pair_.OldName(i));
    return names;
  }

  // "a" DESC, "b" DESC: the last key of a batch, every column descending.
  static std::string Descending(const std::vector<std::string>& key) {
    std::string out;
    for (const std::string& column : key) out += StrCat(out.empty() ? "" : ", ", column, " DESC");
    return out;
  }

  // One statement: read the batch FOR KEY SHARE, insert what new lacks, and
  // save the checkpoint in the same transaction.
  absl::StatusOr<BatchResult> CopyBatchInOneDatabase(Checkpoint& checkpoint, bool careful) {
    Params params;
    std::string after = After(checkpoint, params);
    std::string sql = StrCat(
        "WITH batch AS (SELECT ", pair_.OldSelect(), " FROM ", pair_.old_table, after, " ORDER BY ",
        TablePair::List(pair_.old_key_order), " LIMIT ", pace_.batch(),
        " FOR KEY SHARE), copied AS (",
        InsertRows("batch", OldNames(), pair_.old_key_order,
                   NewRangeOfBatch(!checkpoint.last_key.empty()), careful),
        " RETURNING 1) SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM "
        "copied), ",
        KeyColumnsAsText(), " FROM batch ORDER BY ", Descending(pair_.old_key_order), " LIMIT 1");
    if (absl::Status s = old_db_.Run("BEGIN"); !s.ok()) return s;
    auto rows = old_db_.Exec(sql, params);
    if (!rows.ok()) {
      old_db_.Run("ROLLBACK").IgnoreError();
      return rows.status();
    }
    BatchResult result;
    if (!rows->rows.empty()) {
      const Row& r = rows->rows[0];
      ParseInt(*r[0], result.read);
      ParseInt(*r[1], result.copied);
      Checkpoint next = checkpoint;
      next.last_key.clear();
      for (size_t i = 2; i < r.size(); ++i) next.last_key.push_back(*r[i]);
      next.rows += result.read;
      next.copied += result.copied;
      auto xid = old_db_.Exec("SELECT xid(pg_current_xact_id())::text");
      if (!xid.ok()) {
        old_db_.Run("ROLLBACK").IgnoreError();
        return xid.status();
      }
      result.xid = *xid->rows[0][0];
      next.sweep = PendingSweep{checkpoint.last_key, result.xid, "", result.read};
      if (absl::Status s = ledger_.Save(range_, CheckpointJson(next)); !s.ok()) {
        old_db_.Run("ROLLBACK").IgnoreError();
        return s;
      }
      checkpoint.last_key = next.last_key;
    }
    if (absl::Status s = old_db_.Run("COMMIT"); !s.ok()) return s;
    return result;
  }

  // Across servers, two temporary tables on new (emptied at each commit):
  // the batch's rows, and the keys alive in old's range for the sweep.
  absl::Status MakeStagingTables() {
    if (staging_ready_) return absl::OkStatus();
    for (const auto& [name, columns] : {std::pair{"pgshift_backfill_rows", &pair_.new_columns},
                                        std::pair{"pgshift_backfill_keys", &pair_.new_key}}) {
      if (absl::Status s = new_db_->Run(StrCat(
              "CREATE TEMPORARY TABLE IF NOT EXISTS ", name, " ON COMMIT DELETE ROWS AS SELECT ",
              TablePair::List(*columns), " FROM ", pair_.new_table, " WITH NO DATA"));
          !s.ok()) {
        return s;
      }
    }
    staging_ready_ = true;
    return absl::OkStatus();
  }

  // COPY takes no parameters: a key range's bounds on old travel as
  // settings of the session, set here, read by the condition returned.
  absl::StatusOr<std::string> RangeOnOld(const std::vector<std::string>& after,
                                         const std::vector<std::string>& last) {
    Params bounds;
    std::string settings;
    auto bound = [&](const std::vector<std::string>& key, std::string_view name) {
      std::string values;
      for (size_t i = 0; i < key.size(); ++i) {
        bounds.emplace_back(key[i]);
        std::string setting = StrCat("pgshift.backfill_", name, "_", i);
        settings = StrCat(settings, settings.empty() ? "" : ", ", "pg_catalog.set_config('",
                          setting, "', $", bounds.size(), ", false)");
        values = StrCat(values, i ? ", " : "", "pg_catalog.current_setting('", setting,
                        "')::", pair_.key_types[i]);
      }
      return StrCat("(", TablePair::List(pair_.old_key_order), ") ",
                    name == "after" ? ">" : "<=", " (", values, ")");
    };
    std::string range = after.empty() ? "" : StrCat(bound(after, "after"), " AND ");
    range += bound(last, "last");
    if (absl::Status s = old_db_.Run(StrCat("SELECT ", settings), bounds); !s.ok()) return s;
    return range;
  }

  const char* CopyFormat() const { return pair_.binary_copy ? " (FORMAT binary)" : ""; }

  // Across servers: the batch is read FOR KEY SHARE in a transaction on old
  // that stays open until new has copied it; then old records the
  // checkpoint and commits, letting waiting deletes through (the sweep
  // removes a copy their mirrors missed), and new commits. new waits
  // for locks at most 5 s, so that a client transaction blocked on old
  // behind this batch can never hold new up forever; the batch then
  // starts again.
  // The rows travel by COPY into a temporary table on new, then into the
  // new table.
  absl::StatusOr<BatchResult> CopyBatchAcrossServers(Checkpoint& checkpoint, bool careful) {
    if (absl::Status s = MakeStagingTables(); !s.ok()) return s;
    if (absl::Status s = old_db_.Run("BEGIN"); !s.ok()) return s;
    auto rollback = [&](absl::Status s) {
      old_db_.Run("ROLLBACK").IgnoreError();
      new_db_->Run("ROLLBACK").IgnoreError();
      return s;
    };
    // Lock the batch's rows; learn how many and its last key.
    Params params;
    std::string after = After(checkpoint, params);
    auto locked = old_db_.Exec(
        StrCat("SELECT pg_catalog.count(*) OVER (), ", KeyColumnsAsText(), " FROM (SELECT ",
               TablePair::List(pair_.old_key), " FROM ", pair_.old_table, after, " ORDER BY ",
               TablePair::List(pair_.old_key_order), " LIMIT ", pace_.batch(),
               " FOR KEY SHARE) pgshift_batch ORDER BY ", Descending(pair_.old_key_order),
               " LIMIT 1"),
        params);
    if (!locked.ok()) return rollback(locked.status());
    BatchResult result;
    if (locked->rows.empty()) {
      old_db_.Run("COMMIT").IgnoreError();
      return result;
    }
    const Row& last_row = locked->rows[0];
    ParseInt(*last_row[0], result.read);
    std::vector<std::string> last;
    for (size_t i = 1; i < last_row.size(); ++i) last.push_back(*last_row[i]);
    auto range = RangeOnOld(checkpoint.last_key, last);
    if (!range.ok()) return rollback(range.status());
    if (absl::Status s = new_db_->Run("BEGIN"); !s.ok()) return rollback(s);
    if (absl::Status s = new_db_->Run("SET LOCAL lock_timeout = '5s'"); !s.ok()) return rollback(s);
    const char* format = CopyFormat();
    auto relayed =
        old_db_.CopyTo(StrCat("COPY (SELECT ", TablePair::List(pair_.old_copied), " FROM ",
                              pair_.old_table, " WHERE ", *range, ") TO STDOUT", format),
                       *new_db_, StrCat("COPY pgshift_backfill_rows FROM STDIN", format));
    if (!relayed.ok()) return rollback(relayed.status());
    Params range_params;
    std::string new_range = KeyRange(pair_.new_key_order, checkpoint.last_key, last, range_params);
    auto inserted = new_db_->Exec(InsertRows("pgshift_backfill_rows", pair_.new_columns,
                                             pair_.new_key_order, new_range, careful),
                                  careful ? Params() : range_params);
    if (!inserted.ok()) return rollback(inserted.status());
    // "INSERT 0 n"
    ParseInt(std::string_view(inserted->tag).substr(inserted->tag.rfind(' ') + 1), result.copied);
    // As xid8: a resumed backfill asks new whether it committed.
    auto copy_xid = new_db_->Exec("SELECT pg_catalog.pg_current_xact_id()::text");
    if (!copy_xid.ok()) return rollback(copy_xid.status());
    result.copy_xid = *copy_xid->rows[0][0];
    auto xid = old_db_.Exec("SELECT xid(pg_current_xact_id())::text");
    if (!xid.ok()) return rollback(xid.status());
    result.xid = *xid->rows[0][0];
    Checkpoint next = checkpoint;
    next.last_key = last;
    next.rows += result.read;
    next.copied += result.copied;
    next.sweep = PendingSweep{checkpoint.last_key, result.xid, result.copy_xid, result.read};
    if (absl::Status s = ledger_.Save(range_, CheckpointJson(next)); !s.ok()) {
      return rollback(s);
    }
    // old first: were pgshift killed before new committed, nothing of the
    // batch would outlive it on new (copies of rows deleted meanwhile
    // included). From here the checkpoint claims the batch; if new never
    // commits it, the resumed backfill finds its transaction not committed
    // and copies the batch again (FinishStoppedBatch).
    if (absl::Status s = old_db_.Run("COMMIT"); !s.ok()) return rollback(s);
    checkpoint.last_key = next.last_key;
    if (absl::Status s = new_db_->Run("COMMIT"); !s.ok()) {
      return absl::UnavailableError(StrCat("the batch's copy could not be committed on new (",
                                           MessageOf(s), "); the next run copies it again"));
    }
    return result;
  }

  // A client statement whose snapshot predates the batch's commit cannot
  // see the batch's copies: were it to delete one of the batch's rows, its
  // mirrored delete would miss the copy, which would outlive the row. So
  // the transactions that may hold such a statement's work are waited out
  // (WaitForOlderTransactions; not those of the workers on other ranges,
  // which touch only their own keys, or two workers would wait for each
  // other's batches in turn). Then new's
  // rows of the batch's key range that are no longer in old are removed. A
  // transaction that starts later sees the copy and mirrors its delete
  // itself.
  absl::Status RemoveDeletedMeanwhile(const std::vector<std::string>& after,
                                      const std::vector<std::string>& last,
                                      const BatchResult& batch) {
    if (absl::Status s = WaitForOlderTransactions(old_db_, batch.xid, out_, "backfill",
                                                  pair_.config->name, ledger_.kind());
        !s.ok()) {
      return s;
    }
    Params params;
    auto range = [&](const std::vector<std::string>& key_order) {
      return KeyRange(key_order, after, last, params);
    };
    if (pair_.same_database) {
      // One statement, one snapshot: a row written meanwhile is on both
      // sides or on neither. Keys compare by value, as typed.
      std::string alive = range(pair_.old_key_order);
      std::string gone = range(pair_.new_key_order);
      std::string same_key;
      for (size_t i = 0; i < pair_.old_key.size(); ++i) {
        same_key = StrCat(same_key, " AND pgshift_alive.", pair_.old_key_order[i],
                          " = pgshift_copy.", pair_.new_key_order[i]);
      }
      // NOT EXISTS, not NOT IN: an anti-join spills to disk, where NOT IN's
      // hashed subplan, once the batch's keys pass work_mem, turns into a
      // scan of them per row.
      // Only the batch's own copies (their xmin is its transaction): a row
      // a mirror wrote since is alive on old, even if this snapshot
      // missed it.
      params.emplace_back(batch.xid);
      return old_db_.Run(StrCat("DELETE FROM ", pair_.new_table, " pgshift_copy WHERE ", gone,
                                " AND pgshift_copy.xmin = $", params.size(),
                                "::pg_catalog.xid AND NOT EXISTS (SELECT FROM ", pair_.old_table,
                                " pgshift_alive WHERE ", alive, same_key, ")"),
                         params);
    }
    // Across servers the keys alive in old's range travel by COPY to new,
    // where only rows this batch inserted and nothing has written since
    // (their xmin is the batch's transaction) are removed when not among
    // them: a row a mirror wrote after old was read is alive on old too.
    // (A resumed backfill may sweep before its first batch made them.)
    if (absl::Status s = MakeStagingTables(); !s.ok()) return s;
    auto range_on_old = RangeOnOld(after, last);
    if (!range_on_old.ok()) return range_on_old.status();
    if (absl::Status s = new_db_->Run("BEGIN"); !s.ok()) return s;
    auto rollback = [&](absl::Status s) {
      new_db_->Run("ROLLBACK").IgnoreError();
      return s;
    };
    const char* format = CopyFormat();
    auto relayed =
        old_db_.CopyTo(StrCat("COPY (SELECT ", TablePair::List(pair_.old_key), " FROM ",
                              pair_.old_table, " WHERE ", *range_on_old, ") TO STDOUT", format),
                       *new_db_, StrCat("COPY pgshift_backfill_keys FROM STDIN", format));
    if (!relayed.ok()) return rollback(relayed.status());
    // Estimated from statistics a temporary table never has, a nested loop
    // would read the keys once per row: a hash (or merge) join reads them once.
    if (absl::Status s = new_db_->Run("SET LOCAL enable_nestloop = off"); !s.ok()) {
      return rollback(s);
    }
    params.clear();
    std::string gone = range(pair_.new_key_order);
    params.emplace_back(batch.copy_xid);
    std::string same_key;
    for (const std::string& k : pair_.new_key) {
      same_key = StrCat(same_key, same_key.empty() ? "" : " AND ", "pgshift_alive.", k,
                        " = pgshift_copy.", k);
    }
    if (absl::Status s = new_db_->Run(
            StrCat("DELETE FROM ", pair_.new_table, " pgshift_copy WHERE ", gone,
                   " AND xmin = pg_catalog.xid($", params.size(),
                   "::pg_catalog.xid8) AND NOT EXISTS (SELECT FROM pgshift_backfill_keys "
                   "pgshift_alive WHERE ",
                   same_key, ")"),
            params);
        !s.ok()) {
      return rollback(s);
    }
    return new_db_->Run("COMMIT");
  }

  std::FILE* out_;
  PgClient& old_db_;
  PgClient* new_db_;
  const TablePair& pair_;
  RangeLedger& ledger_;
  const WorkRange& range_;
  BatchPace& pace_;
  const std::atomic<bool>& stop_;
  StateStore state_;
  bool staging_ready_ = false;  // pgshift_backfill_rows exists on new
};

}  // namespace

absl::Status CopyRange(const RangeWorker& worker, const WorkRange& range) {
  return Backfiller(worker, range).Run();
}

absl::Status SweepStoppedBatch(const RangeWorker& worker, const WorkRange& range) {
  return Backfiller(worker, range).SweepStopped();
}

}  // namespace pgshift::migration
