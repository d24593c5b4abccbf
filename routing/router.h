// Where each statement goes: the routing plan. A Router is built for one
// configuration (and the new tables' columns read for it) and never changes;
// a reload builds a new one, so a session's transaction keeps the plans it
// began with.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "routing/config.h"
#include "routing/lru_cache.h"
#include "routing/mention_filter.h"
#include "routing/mirror.h"
#include "routing/parse_tree.h"
#include "routing/query_fingerprints.h"
#include "routing/sql_analysis.h"
#include "routing/statement_template.h"
#include "routing/transaction_control.h"

namespace pgshift::routing {

// The server connections a session may hold. Without [backends.new], new
// tables live on the old server and everything goes to kOld.
enum class BackendId { kOld, kNew };
std::string_view BackendName(BackendId backend);
inline BackendId OtherBackend(BackendId b) { return b == BackendId::kOld ? BackendId::kNew : BackendId::kOld; }

// Per-table traffic, kept across reloads (SHOW TABLES, /metrics).
struct TableCounters {
  std::string table;  // as configured
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> refused{0};
  // Rows the table's mirrored writes returned on its authoritative side
  // (the write audit compares them with the server's own count).
  std::atomic<uint64_t> rows_written{0};
  // Mirrored writes whose apply on the other server failed (each batch
  // once per table it held), whichever on_mirror_error said what then.
  std::atomic<uint64_t> mirror_failures{0};
  // Shadow reads: compared (matched + transient + persistent: those with
  // a verdict); unstable (across servers, no moment without a mirrored
  // write in flight came to judge a difference by); dropped (queue full,
  // no connection); skipped (the transaction had written the table, or a
  // read could not be had whole).
  std::atomic<uint64_t> shadow_compared{0};
  std::atomic<uint64_t> shadow_matched{0};
  std::atomic<uint64_t> shadow_transient{0};
  std::atomic<uint64_t> shadow_persistent{0};
  std::atomic<uint64_t> shadow_unstable{0};
  std::atomic<uint64_t> shadow_dropped{0};
  std::atomic<uint64_t> shadow_skipped{0};
};

// Counters by table name; an entry, once made, lives as long as the registry.
class TableCounterRegistry {
 public:
  TableCounters& For(const std::string& table);
  // The statements on those tables, by shape, counted beside them.
  QueryFingerprints& fingerprints() { return fingerprints_; }
  const QueryFingerprints& fingerprints() const { return fingerprints_; }

 private:
  absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::unique_ptr<TableCounters>> counters_
      ABSL_GUARDED_BY(mutex_);
  QueryFingerprints fingerprints_;
};

struct TableRename;

// The columns of the migrating tables ("schema.name" -> columns in
// attribute order), read from the catalog of the server that holds each:
// old tables from backends.old, new ones from their server. Kept per side,
// since on a second server a new table may have the old one's name.
struct Catalog {
  using Tables = absl::flat_hash_map<std::string, std::vector<std::string>>;
  Tables old_tables;
  Tables new_tables;
  // The generated (stored) columns among them, by table: computed where
  // they are, never written by a mirror.
  Tables old_generated = {};
  Tables new_generated = {};
  // Old's column types (format_type), in old_tables' order: a column
  // old_columns derives is read on new as its expression cast to it.
  Tables old_types = {};
  // Names of the functions PostgreSQL marks volatile (any overload), on
  // either server: a read that calls one is not shadowed. Unread, a list of
  // the common built-in ones stands in (VolatileBuiltins).
  absl::flat_hash_set<std::string> volatile_functions = {};
};

// Built-in functions PostgreSQL marks volatile that reads call most.
const absl::flat_hash_set<std::string>& VolatileBuiltins();

// An error pgshift answers in place of running a statement.
struct Refusal {
  std::string sqlstate;
  std::string message;
};

// Statements of a Query text that one server answers, when its statements
// need different servers.
struct PlanPart {
  BackendId server = BackendId::kOld;
  std::string sql;
  std::vector<ResultShape> shapes;  // as Plan::shapes, for these statements
};

// A read of tables in shadow-read or new-primary, to be run with each of
// them on its other side too and compared, for a sample of its executions.
struct ShadowPlan {
  void Count(std::atomic<uint64_t> TableCounters::*counter) const {
    for (TableCounters* c : counters) (c->*counter).fetch_add(1, std::memory_order_relaxed);
  }

  std::string sql;                  // the same read, for the other side
  BackendId server = BackendId::kOld;  // where that side is
  std::string table;                // the shadowed tables, for reports
  std::vector<std::string> tables;  // the same, one by one
  // The key of the shadowed table (old names), when the read reads only
  // that table: a difference may then be traced to keys (KeyTrace).
  std::vector<std::string> key;
  std::vector<TableCounters*> counters;  // each comparison counts for every one
  double sample = 0;                // share of executions compared
  bool ordered = false;             // the read has ORDER BY: compare as sequences
  bool new_is_authoritative = false;
  std::string fingerprint;
  std::string normalized;  // the read with its constants taken out, for reports
  // Set when a sampled execution is not compared, but counted skipped:
  // why (it calls a volatile function, or cannot be rewritten for the
  // other side; `sql` is then empty).
  std::string skip_reason;
  // It calls functions by name: one that lies about its volatility could
  // leave session state behind on pgshift's connection (cleaned with
  // DISCARD ALL after it). A SELECT calling none cannot.
  bool calls_functions = true;
};

// How to put a statement's constants back into the texts of a plan made for
// its template (see statement_template.h).
struct PlanTemplate {
  TemplateText sql;
  std::vector<TemplateText> parts;
  TemplateText shadow;
  // Per constant, whether it may be sent as a parameter (see
  // Plan::parameterized); empty when the plan is not sent that way.
  std::vector<bool> parameters;
};

// The plan for one Query text or one Parse. Later phases add a mirror and a
// shadow side next to `server`.
struct Plan {
  BackendId server = BackendId::kOld;  // the connection that answers
  std::string sql;               // the text to send there
  bool rewritten = false;        // sql differs from the client's
  std::optional<Refusal> refusal;
  bool writes = false;               // some statement may change data
  bool transaction_control = false;  // some statement is BEGIN, COMMIT, SAVEPOINT, ...
  TransactionKind transaction = TransactionKind::kNone;  // when it is the only statement
  // Some statement's rows are mirrored to the other server by the session
  // (see ResultShape::remote).
  bool mirrors_remotely = false;
  // A COPY FROM STDIN: its reply completes only after the client's data.
  bool copies_in = false;
  // A single SQL-level PREPARE: the name it prepares, whose EXECUTE must go
  // where it went.
  std::string prepares;
  // A single PREPARE TRANSACTION, COMMIT PREPARED or ROLLBACK PREPARED: its
  // transaction's identifier.
  std::string gid;
  std::optional<ShadowPlan> shadow;
  // Set when the statements of a Query need different servers: run one part
  // after the other, each only if the one before succeeded. `server` is
  // the last part's.
  std::vector<PlanPart> parts;
  // With a second server, a Query that mixes transaction control with
  // other statements: each transaction-control statement, and each run of
  // others, is planned and sent as a Query of its own, in order, so that
  // the session knows at each one where the client's transaction stands
  // (a mirrored write in it, its COMMIT's two-phase commit). Nothing else
  // of the plan is set.
  std::vector<QueryStatement> statements;
  // Per statement, how its reply must be reshaped into what the client's own
  // statement would have answered (mirrored writes); empty when none is.
  std::vector<ResultShape> shapes;
  // Set on a plan made for a statement template; the plan a client's
  // statement gets has its constants filled in (and this unset).
  std::shared_ptr<const PlanTemplate> fill;
  // A single write mirrored on one database, sent as a Query: the same
  // statement with its numeric constants as parameters, so that the session
  // can prepare its long rewritten text once per server connection instead
  // of PostgreSQL parsing and planning it on every execution.
  std::optional<ParameterizedText> parameterized;
  // Configured tables it reads and writes, for their counters.
  std::vector<TableCounters*> reads;
  std::vector<TableCounters*> writes_to;
  std::vector<TableCounters*> refused_tables;
  // The statement's shape, when it names configured tables (and the
  // registry had room).
  QueryFingerprint* fingerprint = nullptr;

  // Counts one execution (or one refusal) against the tables and the shape.
  void Count() const;
};
using PlanPtr = std::shared_ptr<const Plan>;

// The temporary table a COPY into a mirrored table is staged in
// (routing/copy_plan.cc).
inline constexpr std::string_view kCopyStaging = "pg_temp.pgshift_copy";

// About how many bytes a plan holds (its texts and parts), for the plan
// cache's plan_cache_max_bytes.
size_t PlanBytes(const PlanPtr& plan);

class Router {
 public:
  // `catalog` holds the columns of new tables that were readable; `counters`
  // must outlive the router.
  Router(ConfigPtr config, Catalog catalog, TableCounterRegistry& counters);

  // Fast path: false means the text cannot touch a configured table and
  // goes to old untouched, without a plan.
  bool MayTouch(std::string_view sql) const { return filter_.MayMention(sql); }

  // The plan for a Query or Parse text, cached by text, or by its template
  // when it has constants. A syntax error gets a plan that forwards the
  // text to old unchanged, so PostgreSQL reports it in its own words.
  PlanPtr PlanFor(std::string_view sql);

  const Config& config() const { return *config_; }
  const Catalog& catalog() const { return catalog_; }
  TableCounterRegistry& counters() const { return counters_; }
  bool has_new_server() const { return config_->new_backend.has_value(); }
  // Some table's writes are mirrored to a second server.
  bool mirrors_across_servers() const;
  size_t cached_plans() const { return cache_.size() + template_cache_.size(); }

 private:
  struct PlanDraft;
  // The plan of `sql`, with its shape recorded when it names configured
  // tables.
  PlanPtr MakePlan(std::string_view sql) const;
  PlanPtr PlanText(std::string_view sql) const;
  // Which server statement `i` needs, what it writes and reads, what of it
  // is refused.
  void PlaceStatement(const ParseTree& tree, size_t i, PlanDraft& draft, Plan& plan) const;
  // The same for one configured table it names: the server that answers it.
  BackendId PlaceTable(const ParseTree& tree, size_t i, const TableConfig& table, PlanDraft& draft,
                       Plan& plan) const;
  // `table`'s new name and columns, when it is read or written on new.
  void AddRename(const TableConfig& table, std::vector<TableRename>& renames) const;
  // The mirrored writes rewritten to return (or write) their rows.
  absl::Status AddMirrors(ParseTree& tree, const PlanDraft& draft, Plan& plan) const;
  // The plan of a template, with `fill` set; without it when the template
  // is no statement PostgreSQL would parse.
  PlanPtr MakeTemplatePlan(std::string_view text, int first, size_t count) const;
  // COPY FROM into a mirrored table, staged and written by a mirrored
  // INSERT (see router.cc).
  PlanPtr CopyPlan(ParseTree& tree, const TableConfig& table) const;
  // The shadow of a single read on shadowed tables, if it has one.
  std::optional<ShadowPlan> ShadowFor(std::string_view sql, const StatementInfo& info) const;
  // How writes to `table` (in a mirrored phase) reach the other side.
  absl::StatusOr<MirrorSpec> MirrorSpecFor(const TableConfig& table) const;
  // The new and old tables' columns, from the catalog, where known, and
  // the table's column transforms.
  void SetCatalogColumns(const TableConfig& table, TableRename& rename) const;

  ConfigPtr config_;
  Catalog catalog_;
  TableCounterRegistry& counters_;
  TableMentionFilter filter_;
  LruCache<PlanPtr> cache_;
  LruCache<PlanPtr> template_cache_;  // by template text
};


}  // namespace pgshift::routing
