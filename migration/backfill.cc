#include "migration/backfill.h"

#include <chrono>
#include <optional>
#include <thread>

#include "common/strings.h"
#include "migration/older_transactions.h"
#include "migration/state_store.h"
#include "migration/table_pair.h"

namespace pgshift::migration {

namespace {

using Clock = std::chrono::steady_clock;
using Params = std::vector<std::optional<std::string>>;

// Postgres allows 65535 parameters per statement.
constexpr size_t kMaxParams = 65535;

class Backfiller {
 public:
  Backfiller(const routing::Config& config, const BackfillOptions& options, std::FILE* out,
             PgClient& old_db, PgClient* new_db, const TablePair& pair)
      : config_(config), options_(options), out_(out), old_db_(old_db), new_db_(new_db),
        pair_(pair), state_(old_db) {}

  absl::Status Run() {
    const std::string& table = pair_.config->name;
    if (absl::Status s = state_.Ensure(); !s.ok()) return s;
    if (options_.restart) {
      if (absl::Status s = state_.ClearCheckpoint(table); !s.ok()) return s;
    }
    auto saved = state_.LoadCheckpoint(table);
    if (!saved.ok()) return saved.status();
    if (*saved && (*saved)->done) {
      std::fprintf(out_, "pgshift backfill: %s was already copied (%lld rows); --restart copies "
                         "it again\n",
                   table.c_str(), static_cast<long long>((*saved)->rows));
      return absl::OkStatus();
    }
    Checkpoint checkpoint = saved->value_or(Checkpoint{});
    if (!checkpoint.last_key.empty()) {
      std::fprintf(out_, "pgshift backfill: %s resumes after key %s (%lld rows read before)\n",
                   table.c_str(), KeyText(checkpoint.last_key).c_str(),
                   static_cast<long long>(checkpoint.rows));
    }
    int64_t estimate = EstimateRows();
    const int64_t start_rows = checkpoint.rows;
    const auto started = Clock::now();
    int64_t copied_total = 0;
    while (true) {
      if (absl::Status s = WaitWhileUnderPressure(); !s.ok()) return s;
      std::vector<std::string> before = checkpoint.last_key;
      auto batch = CopyBatch(checkpoint);
      if (!batch.ok()) return batch.status();
      if (batch->read == 0) break;
      if (absl::Status s = RemoveDeletedMeanwhile(before, checkpoint.last_key, *batch); !s.ok()) {
        return s;
      }
      checkpoint.rows += batch->read;
      copied_total += batch->copied;
      double seconds = std::chrono::duration<double>(Clock::now() - started).count();
      double rate = seconds > 0 ? static_cast<double>(checkpoint.rows - start_rows) / seconds : 0;
      Report(checkpoint, batch->copied, rate, estimate);
      Throttle(checkpoint.rows - start_rows, started);
    }
    checkpoint.done = true;
    if (absl::Status s = state_.SaveCheckpoint(table, checkpoint); !s.ok()) return s;
    double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (absl::Status s = state_.Record(
            table, "backfill",
            StrCat("{\"rows_read\":", checkpoint.rows, ",\"rows_copied\":", copied_total,
                   ",\"seconds\":", seconds, "}"));
        !s.ok()) {
      return s;
    }
    if (options_.progress_bar) std::fputc('\n', out_);
    std::fprintf(out_,
                 "pgshift backfill: %s done: %lld rows read, %lld copied (the rest new already "
                 "had), %.1f s\n",
                 table.c_str(), static_cast<long long>(checkpoint.rows),
                 static_cast<long long>(copied_total), seconds);
    return absl::OkStatus();
  }

 private:
  struct BatchResult {
    int64_t read = 0;
    int64_t copied = 0;
    std::string xid;  // the batch's transaction on old
    // Across servers, its transaction on new: the rows it inserted there
    // carry it as their xmin until a later write replaces them.
    std::string copy_xid;
  };

  int64_t EstimateRows() {
    auto r = old_db_.Exec(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_catalog.pg_class WHERE oid = "
        "$1::pg_catalog.regclass",
        {pair_.old_table});
    int64_t n = 0;
    if (r.ok() && !r->rows.empty() && r->rows[0][0]) ParseInt(*r->rows[0][0], n);
    return n;
  }

  // The keyset condition after the checkpoint, and its parameters.
  std::string After(const Checkpoint& c, Params& params) const {
    if (c.last_key.empty()) return "";
    for (const std::string& k : c.last_key) params.emplace_back(k);
    return StrCat(" WHERE (", TablePair::List(pair_.old_key_order), ") > ", pair_.KeyParams(1));
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

  absl::StatusOr<BatchResult> CopyBatch(Checkpoint& checkpoint) {
    return pair_.same_database ? CopyBatchInOneDatabase(checkpoint)
                               : CopyBatchAcrossServers(checkpoint);
  }

  // "a" DESC, "b" DESC: the last key of a batch, every column descending.
  static std::string Descending(const std::vector<std::string>& key) {
    std::string out;
    for (const std::string& column : key) out += StrCat(out.empty() ? "" : ", ", column, " DESC");
    return out;
  }

  // One statement: read the batch FOR KEY SHARE, insert what new lacks, and
  // save the checkpoint in the same transaction.
  absl::StatusOr<BatchResult> CopyBatchInOneDatabase(Checkpoint& checkpoint) {
    Params params;
    std::string after = After(checkpoint, params);
    std::string sql = StrCat(
        "WITH batch AS (SELECT ", TablePair::List(pair_.old_columns), " FROM ", pair_.old_table,
        after, " ORDER BY ", TablePair::List(pair_.old_key_order), " LIMIT ", options_.batch,
        " FOR KEY SHARE), copied AS (INSERT INTO ", pair_.new_table, " (",
        TablePair::List(pair_.new_columns), ") OVERRIDING SYSTEM VALUE SELECT ",
        TablePair::List(pair_.old_columns), " FROM batch ON CONFLICT (",
        TablePair::List(pair_.new_key),
        ") DO NOTHING RETURNING 1) SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM "
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
      if (absl::Status s = state_.SaveCheckpoint(pair_.config->name, next); !s.ok()) {
        old_db_.Run("ROLLBACK").IgnoreError();
        return s;
      }
      checkpoint.last_key = next.last_key;
      auto xid = old_db_.Exec("SELECT xid(pg_current_xact_id())::text");
      if (!xid.ok()) {
        old_db_.Run("ROLLBACK").IgnoreError();
        return xid.status();
      }
      result.xid = *xid->rows[0][0];
    }
    if (absl::Status s = old_db_.Run("COMMIT"); !s.ok()) return s;
    return result;
  }

  // Across servers: the batch is read FOR KEY SHARE in a transaction on old
  // that stays open until new has committed the copies; then old records
  // the checkpoint and commits, letting waiting deletes through. new waits
  // for locks at most 5 s, so that a client transaction blocked on old
  // behind this batch can never hold new up forever; the batch then
  // starts again.
  absl::StatusOr<BatchResult> CopyBatchAcrossServers(Checkpoint& checkpoint) {
    for (int attempt = 1;; ++attempt) {
      auto result = TryCopyBatchAcrossServers(checkpoint);
      if (result.ok() || attempt == 10) return result;
      std::string state = SqlStateOf(result.status());
      if (state != "55P03" && state != "40P01" && state != "40001") return result;
      std::fprintf(out_, "pgshift backfill: %s batch retried (%s)\n", pair_.config->name.c_str(),
                   std::string(MessageOf(result.status())).c_str());
      std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
    }
  }

  absl::StatusOr<BatchResult> TryCopyBatchAcrossServers(Checkpoint& checkpoint) {
    Params params;
    std::string after = After(checkpoint, params);
    if (absl::Status s = old_db_.Run("BEGIN"); !s.ok()) return s;
    auto rollback = [&](absl::Status s) {
      old_db_.Run("ROLLBACK").IgnoreError();
      new_db_->Run("ROLLBACK").IgnoreError();
      return s;
    };
    auto rows = old_db_.Exec(
        StrCat("SELECT ", KeyColumnsAsText(), ", ", TablePair::List(pair_.old_columns), " FROM ",
               pair_.old_table, after, " ORDER BY ", TablePair::List(pair_.old_key_order),
               " LIMIT ", options_.batch, " FOR KEY SHARE"),
        params);
    if (!rows.ok()) return rollback(rows.status());
    BatchResult result;
    result.read = static_cast<int64_t>(rows->rows.size());
    if (result.read == 0) {
      old_db_.Run("COMMIT").IgnoreError();
      return result;
    }
    if (absl::Status s = new_db_->Run("BEGIN"); !s.ok()) return rollback(s);
    if (absl::Status s = new_db_->Run("SET LOCAL lock_timeout = '5s'"); !s.ok()) return rollback(s);
    const size_t key_count = pair_.old_key.size();
    const size_t columns = pair_.new_columns.size();
    const size_t per_statement = std::max<size_t>(1, kMaxParams / columns);
    for (size_t start = 0; start < rows->rows.size(); start += per_statement) {
      size_t end = std::min(rows->rows.size(), start + per_statement);
      Params values;
      std::string tuples;
      for (size_t i = start; i < end; ++i) {
        std::string tuple;
        for (size_t c = 0; c < columns; ++c) {
          values.push_back(rows->rows[i][key_count + c]);
          tuple = StrCat(tuple, c ? ", " : "", "$", values.size());
        }
        tuples = StrCat(tuples, i > start ? ", " : "", "(", tuple, ")");
      }
      auto inserted = new_db_->Exec(
          StrCat("INSERT INTO ", pair_.new_table, " (", TablePair::List(pair_.new_columns),
                 ") OVERRIDING SYSTEM VALUE VALUES ", tuples, " ON CONFLICT (",
                 TablePair::List(pair_.new_key), ") DO NOTHING"),
          values);
      if (!inserted.ok()) return rollback(inserted.status());
      // "INSERT 0 n"
      int64_t n = 0;
      ParseInt(std::string_view(inserted->tag).substr(inserted->tag.rfind(' ') + 1), n);
      result.copied += n;
    }
    auto copy_xid = new_db_->Exec("SELECT pg_catalog.xid(pg_catalog.pg_current_xact_id())::text");
    if (!copy_xid.ok()) return rollback(copy_xid.status());
    result.copy_xid = *copy_xid->rows[0][0];
    if (absl::Status s = new_db_->Run("COMMIT"); !s.ok()) return rollback(s);
    Checkpoint next = checkpoint;
    next.last_key.clear();
    for (size_t i = 0; i < key_count; ++i) next.last_key.push_back(*rows->rows.back()[i]);
    next.rows += result.read;
    // Were this to fail, the batch is copied again next time: harmless.
    if (absl::Status s = state_.SaveCheckpoint(pair_.config->name, next); !s.ok()) {
      return rollback(s);
    }
    auto xid = old_db_.Exec("SELECT xid(pg_current_xact_id())::text");
    if (!xid.ok()) return rollback(xid.status());
    result.xid = *xid->rows[0][0];
    if (absl::Status s = old_db_.Run("COMMIT"); !s.ok()) return s;
    checkpoint.last_key = next.last_key;
    return result;
  }

  // A client statement whose snapshot predates the batch's commit cannot
  // see the batch's copies: were it to delete one of the batch's rows, its
  // mirrored delete would miss the copy, which would outlive the row. So
  // the transactions that may hold such a statement's work are waited out
  // (WaitForOlderTransactions). Then new's
  // rows of the batch's key range that are no longer in old are removed. A
  // transaction that starts later sees the copy and mirrors its delete
  // itself.
  absl::Status RemoveDeletedMeanwhile(const std::vector<std::string>& after,
                                      const std::vector<std::string>& last,
                                      const BatchResult& batch) {
    if (absl::Status s = WaitForOlderTransactions(old_db_, batch.xid, out_, "backfill"); !s.ok()) {
      return s;
    }
    Params params;
    auto range = [&](const std::vector<std::string>& key) {
      std::string where;
      if (!after.empty()) {
        for (const std::string& k : after) params.emplace_back(k);
        where = StrCat("(", TablePair::List(key), ") > ",
                       pair_.KeyParams(static_cast<int>(params.size() - after.size()) + 1));
      }
      for (const std::string& k : last) params.emplace_back(k);
      return StrCat(where, where.empty() ? "" : " AND ", "(", TablePair::List(key), ") <= ",
                    pair_.KeyParams(static_cast<int>(params.size() - last.size()) + 1));
    };
    if (pair_.same_database) {
      // One statement, one snapshot: a row written meanwhile is on both
      // sides or on neither. Keys compare by value, as typed.
      std::string alive = range(pair_.old_key_order);
      std::string gone = range(pair_.new_key_order);
      return old_db_.Run(StrCat("DELETE FROM ", pair_.new_table, " WHERE ", gone, " AND (",
                                TablePair::List(pair_.new_key_order), ") NOT IN (SELECT ",
                                TablePair::List(pair_.old_key_order), " FROM ", pair_.old_table,
                                " WHERE ", alive, ")"),
                         params);
    }
    auto alive = old_db_.Exec(StrCat("SELECT ", KeyColumnsAsText(), " FROM ", pair_.old_table,
                                     " WHERE ", range(pair_.old_key_order)),
                              params);
    if (!alive.ok()) return alive.status();
    std::vector<std::vector<std::string>> keys;
    keys.reserve(alive->rows.size());
    for (const Row& row : alive->rows) {
      std::vector<std::string>& key = keys.emplace_back();
      for (const auto& value : row) key.push_back(*value);
    }
    // Only rows this batch inserted on new and nothing has written since:
    // a row a mirror wrote after `alive` was read is alive on old too.
    params.clear();
    std::string gone = range(pair_.new_key_order);
    params.emplace_back(batch.copy_xid);
    const int xid_param = static_cast<int>(params.size());
    params.emplace_back(TablePair::KeysJson(keys));
    return new_db_->Run(
        StrCat("DELETE FROM ", pair_.new_table, " WHERE ", gone, " AND xmin = $", xid_param,
               "::pg_catalog.xid AND (", TablePair::List(pair_.new_key_order), ") NOT IN (",
               pair_.KeysFromJson(xid_param + 1, true), ")"),
        params);
  }

  absl::Status WaitWhileUnderPressure() {
    bool said = false;
    while (true) {
      auto r = old_db_.Exec(
          "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
          "AND datname = current_database()");
      if (!r.ok()) return r.status();
      int64_t waiting = 0;
      ParseInt(*r->rows[0][0], waiting);
      if (waiting <= options_.max_lock_waits) return absl::OkStatus();
      if (!said) {
        std::fprintf(out_, "pgshift backfill: pausing: %lld sessions wait on locks in old "
                           "(more than --max-lock-waits %lld)\n",
                     static_cast<long long>(waiting),
                     static_cast<long long>(options_.max_lock_waits));
        said = true;
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }

  void Throttle(int64_t rows, Clock::time_point started) {
    if (options_.rate <= 0) return;
    auto due = started + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(static_cast<double>(rows) / options_.rate));
    if (due > Clock::now()) std::this_thread::sleep_until(due);
  }

  void Report(const Checkpoint& c, int64_t copied, double rate, int64_t estimate) {
    if (!options_.progress_bar) {
      std::fprintf(out_,
                   "event=backfill_batch table=%s rows=%lld copied=%lld last_key=%s rate=%.0f\n",
                   pair_.config->name.c_str(), static_cast<long long>(c.rows),
                   static_cast<long long>(copied), KeyText(c.last_key).c_str(), rate);
      std::fflush(out_);
      return;
    }
    double share = estimate > 0 ? std::min(1.0, static_cast<double>(c.rows) / static_cast<double>(estimate)) : 0;
    int filled = static_cast<int>(share * 30);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(30, ' ');
    double eta = rate > 0 && estimate > c.rows ? static_cast<double>(estimate - c.rows) / rate : 0;
    std::fprintf(out_, "\r%s [%s] %3.0f%% %lld rows, %.0f rows/s, ETA %.0f s   ",
                 pair_.config->name.c_str(), bar.c_str(), share * 100,
                 static_cast<long long>(c.rows), rate, eta);
    std::fflush(out_);
  }

  const routing::Config& config_;
  const BackfillOptions& options_;
  std::FILE* out_;
  PgClient& old_db_;
  PgClient* new_db_;
  const TablePair& pair_;
  StateStore state_;
};

}  // namespace

absl::Status Backfill(const routing::Config& config, const std::string& table,
                      const BackfillOptions& options, std::FILE* out) {
  auto old_db = PgClient::Connect(config, config.old_backend, "old", "pgshift backfill");
  if (!old_db.ok()) return old_db.status();
  std::optional<PgClient> new_db;
  if (config.new_backend) {
    auto connected = PgClient::Connect(config, *config.new_backend, "new", "pgshift backfill");
    if (!connected.ok()) return connected.status();
    new_db.emplace(std::move(*connected));
  }
  PgClient& new_side = new_db ? *new_db : *old_db;
  auto pair = ResolveTable(config, table, *old_db, new_side);
  if (!pair.ok()) return pair.status();
  if (pair->new_is_authoritative) {
    return absl::FailedPreconditionError(
        StrCat(pair->config->name, " is in phase ", routing::PhaseName(pair->config->phase),
               ": new is authoritative, and backfill copies old into new; it is meant for "
               "dual-write"));
  }
  if (std::string note = KeySortNote(*pair); !note.empty()) {
    std::fprintf(out, "pgshift backfill: %s\n", note.c_str());
  }
  return Backfiller(config, options, out, *old_db, new_db ? &*new_db : nullptr, *pair).Run();
}

}  // namespace pgshift::migration
