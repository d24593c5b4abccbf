#include "routing/router.h"

#include <algorithm>
#include <optional>
#include <set>
#include <tuple>

#include "common/strings.h"
#include "protocol/error_fields.h"
#include "routing/hidden_writes.h"
#include "routing/mirror.h"
#include "routing/parse_tree.h"
#include "routing/rewrite.h"
#include "routing/shadow.h"

namespace pgshift::routing {

namespace {

std::pair<std::string, std::string> SplitQualified(const std::string& name) {
  size_t dot = name.find('.');
  if (dot == std::string::npos) return {"public", name};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

bool IsWriteKind(StatementKind kind) {
  switch (kind) {
    case StatementKind::kInsert:
    case StatementKind::kUpdate:
    case StatementKind::kDelete:
    case StatementKind::kMerge:
    case StatementKind::kTruncate:
    case StatementKind::kDdl:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string_view BackendName(BackendId backend) { return backend == BackendId::kOld ? "old" : "new"; }


TableCounters& TableCounterRegistry::For(const std::string& table) {
  absl::MutexLock lock(&mutex_);
  auto& slot = counters_[table];
  if (!slot) {
    slot = std::make_unique<TableCounters>();
    slot->table = table;
  }
  return *slot;
}

Router::Router(ConfigPtr config, Catalog catalog, TableCounterRegistry& counters)
    : config_(std::move(config)),
      catalog_(std::move(catalog)),
      counters_(counters),
      filter_(*config_),
      // The two caches share plan_cache_max_bytes.
      cache_(static_cast<size_t>(config_->proxy.plan_cache_size),
             static_cast<size_t>(config_->proxy.plan_cache_max_bytes / 2), PlanBytes),
      template_cache_(static_cast<size_t>(config_->proxy.plan_cache_size),
                      static_cast<size_t>(config_->proxy.plan_cache_max_bytes / 2), PlanBytes) {}

bool Router::mirrors_across_servers() const {
  if (!has_new_server()) return false;
  return std::any_of(config_->tables.begin(), config_->tables.end(), [](const TableConfig& t) {
    return t.phase != Phase::kOldOnly && t.phase != Phase::kNewOnly;
  });
}

namespace {

// A single write mirrored on one database: its rewritten text is several
// times the client's, so it is worth preparing (see Plan::parameterized).
bool WorthPreparing(const Plan& plan) {
  return plan.rewritten && !plan.refusal && plan.parts.empty() && !plan.shadow &&
         !plan.copies_in && plan.shapes.size() == 1 && !plan.shapes[0].tag.empty() &&
         !plan.shapes[0].remote && !plan.shapes[0].hidden;
}

// The plan's text with each numeric constant in a place that allows it as a
// parameter of the type PostgreSQL would give the constant; nullopt when
// there is none.
std::optional<ParameterizedText> Parameterize(const PlanTemplate& fill,
                                              const std::vector<std::string_view>& constants) {
  ParameterizedText out;
  std::vector<int> number(constants.size(), 0);
  for (size_t k = 0; k < constants.size(); ++k) {
    int32_t type = fill.parameters[k] ? NumericConstantType(constants[k]) : 0;
    if (type == 0) continue;
    out.types.push_back(type);
    out.values.emplace_back(constants[k]);
    number[k] = static_cast<int>(out.types.size());
  }
  if (out.types.empty()) return std::nullopt;
  out.sql = fill.sql.FillParameters(constants, number);
  return out;
}

}  // namespace

PlanPtr Router::PlanFor(std::string_view sql) {
  if (std::optional<PlanPtr> known = cache_.Find(sql)) return *known;
  if (std::optional<StatementTemplate> t = MakeTemplate(sql)) {
    const size_t count = t->constants.size();
    PlanPtr base = *template_cache_.Get(
        t->text, [&](std::string_view text) -> absl::StatusOr<PlanPtr> {
          return MakeTemplatePlan(text, t->first, count);
        });
    if (base->fill) {
      auto plan = std::make_shared<Plan>(*base);
      plan->fill.reset();
      plan->sql = base->rewritten ? base->fill->sql.Fill(t->constants) : std::string(sql);
      for (size_t i = 0; i < plan->parts.size(); ++i) {
        plan->parts[i].sql = base->fill->parts[i].Fill(t->constants);
      }
      if (plan->shadow && plan->shadow->skip_reason.empty())
        plan->shadow->sql = base->fill->shadow.Fill(t->constants);
      if (!base->fill->parameters.empty()) {
        plan->parameterized = Parameterize(*base->fill, t->constants);
      }
      return plan;
    }
  }
  auto plan = cache_.Get(sql, [this](std::string_view text) -> absl::StatusOr<PlanPtr> {
    return MakePlan(text);
  });
  return *plan;  // MakePlan never fails: problems become refusals
}

PlanPtr Router::MakeTemplatePlan(std::string_view text, int first, size_t count) const {
  absl::StatusOr<ParseTree> tree = ParseTree::Parse(text);
  if (!tree.ok()) return std::make_shared<Plan>();  // no fill: not usable
  PlanPtr made = MakePlan(text);
  auto plan = std::make_shared<Plan>(*made);
  auto fill = std::make_shared<PlanTemplate>();
  // A Query split at its transaction control is planned per text.
  bool ok = plan->statements.empty() && fill->sql.Split(plan->sql, first, count);
  for (const PlanPart& part : plan->parts) {
    ok = ok && fill->parts.emplace_back().Split(part.sql, first, count);
  }
  if (plan->shadow && plan->shadow->skip_reason.empty())
    ok = ok && fill->shadow.Split(plan->shadow->sql, first, count);
  // The client's text has no parameters of its own (a Query), so the
  // constants can be numbered from $1.
  if (ok && first == 1 && WorthPreparing(*plan)) fill->parameters = ParameterPositions(*tree, first, count);
  if (ok) plan->fill = std::move(fill);
  return plan;
}

void Router::SetCatalogColumns(const TableConfig& table, TableRename& rename) const {
  if (auto columns = catalog_.new_tables.find(table.new_name); columns != catalog_.new_tables.end()) {
    rename.new_columns = &columns->second;
  }
  if (auto columns = catalog_.old_tables.find(table.name); columns != catalog_.old_tables.end()) {
    rename.old_columns = &columns->second;
  }
  if (auto types = catalog_.old_types.find(table.name); types != catalog_.old_types.end()) {
    rename.old_types = &types->second;
  }
  rename.derived = &table.old_columns;
  rename.computed = &table.new_columns;
}

absl::StatusOr<MirrorSpec> Router::MirrorSpecFor(const TableConfig& table) const {
  const bool new_is_authoritative = ReadsFromNew(table.phase);
  const std::string& auth = new_is_authoritative ? table.new_name : table.name;
  const std::string& other = new_is_authoritative ? table.name : table.new_name;
  const Catalog::Tables& auth_side =
      new_is_authoritative ? catalog_.new_tables : catalog_.old_tables;
  const Catalog::Tables& other_side =
      new_is_authoritative ? catalog_.old_tables : catalog_.new_tables;
  auto auth_columns = auth_side.find(auth);
  auto other_columns = other_side.find(other);
  if (auth_columns == auth_side.end() || other_columns == other_side.end()) {
    const std::string& missing = auth_columns == auth_side.end() ? auth : other;
    return absl::FailedPreconditionError(
        StrCat("pgshift: cannot mirror writes to ", table.name, " in phase ",
               PhaseName(table.phase), ": the columns of ", missing,
               " could not be read from its backend's catalog"));
  }
  // Column names on the authoritative side -> on the mirror.
  auto to_mirror = [&](const std::string& column) -> std::string {
    if (!new_is_authoritative) {
      auto it = table.columns.find(column);
      return it == table.columns.end() ? column : it->second;
    }
    for (const auto& [from, to] : table.columns) {
      if (to == column) return from;
    }
    return column;
  };
  MirrorSpec spec;
  spec.table = auth;
  std::tie(spec.mirror_schema, spec.mirror_name) = SplitQualified(other);
  spec.phase = std::string(PhaseName(table.phase));
  spec.remote = has_new_server();
  const std::vector<std::string>& mirror_columns = other_columns->second;
  const Catalog::Tables& other_generated =
      new_is_authoritative ? catalog_.old_generated : catalog_.new_generated;
  const auto computed = other_generated.find(other);
  auto generated_on_mirror = [&](const std::string& m) {
    return computed != other_generated.end() &&
           std::find(computed->second.begin(), computed->second.end(), m) != computed->second.end();
  };
  // The mirror's columns computed from the authoritative row take the
  // place of any copied by name.
  const std::vector<ColumnTransform>& transforms =
      new_is_authoritative ? table.old_columns : table.new_columns;
  for (const std::string& column : auth_columns->second) {
    std::string m = to_mirror(column);
    if (std::find(mirror_columns.begin(), mirror_columns.end(), m) != mirror_columns.end() &&
        !generated_on_mirror(m) && FindTransform(transforms, m) == nullptr) {
      spec.columns.push_back({column, "", m});
    }
  }
  for (const ColumnTransform& c : transforms) spec.columns.push_back({"", c.expression, c.column});
  for (const std::string& k : table.key) {
    auto renamed = table.columns.find(k);
    spec.key.push_back(new_is_authoritative && renamed != table.columns.end() ? renamed->second : k);
  }
  return spec;
}

std::optional<ShadowPlan> Router::ShadowFor(std::string_view sql, const StatementInfo& info) const {
  // The other side of a shadowed table is new in shadow-read and old in
  // new-primary; every other table stays where the read itself goes.
  std::vector<TableRename> renames;
  std::optional<ShadowPlan> shadow;
  std::set<BackendId> servers;
  const BackendId new_server = has_new_server() ? BackendId::kNew : BackendId::kOld;
  for (const std::string& name : info.reads) {
    auto table = std::find_if(config_->tables.begin(), config_->tables.end(),
                              [&](const TableConfig& t) { return t.name == name; });
    if (table == config_->tables.end()) {
      servers.insert(BackendId::kOld);
      continue;
    }
    const bool shadowed = table->shadowed();
    const bool on_new = shadowed ? table->phase == Phase::kShadowRead : ReadsFromNew(table->phase);
    servers.insert(on_new ? new_server : BackendId::kOld);
    if (shadowed) {
      if (!shadow) {
        shadow.emplace();
        shadow->sample = table->shadow_sample;
        shadow->new_is_authoritative = table->phase == Phase::kNewPrimary;
      }
      shadow->table = shadow->table.empty() ? table->name : StrCat(shadow->table, ", ", table->name);
      shadow->tables.push_back(table->name);
      shadow->key = info.reads.size() == 1 ? table->key : std::vector<std::string>{};
      shadow->counters.push_back(&counters_.For(table->name));
      shadow->sample = std::max(shadow->sample, table->shadow_sample);
    }
    if (!on_new) continue;
    auto [new_schema, new_name] = SplitQualified(table->new_name);
    auto [old_schema, old_name] = SplitQualified(table->name);
    TableRename rename{old_schema, old_name, new_schema, new_name, table->columns, nullptr};
    SetCatalogColumns(*table, rename);
    renames.push_back(std::move(rename));
  }
  if (!shadow || servers.size() != 1) return std::nullopt;
  shadow->server = *servers.begin();
  shadow->fingerprint = Fingerprint(std::string(sql));
  shadow->normalized = Normalize(std::string(sql));
  absl::StatusOr<ParseTree> tree = ParseTree::Parse(sql);
  if (!tree.ok()) return std::nullopt;
  absl::Status rewritten = RewriteTree(*tree, renames);
  absl::StatusOr<std::string> text =
      rewritten.ok() ? tree->Deparse() : absl::StatusOr<std::string>(rewritten);
  if (!text.ok()) {
    // Counted skipped, with the reason: e.g. `*` over a column new lacks.
    shadow->skip_reason = StrCat("it cannot be read on the other side: ", MessageOf(text.status()));
    return shadow;
  }
  shadow->sql = *std::move(text);
  const PgQuery__Node* stmt = tree->get()->stmts[0]->stmt;
  shadow->ordered =
      stmt->node_case == PG_QUERY__NODE__NODE_SELECT_STMT && stmt->select_stmt->n_sort_clause > 0;
  shadow->calls_functions = !info.functions.empty();
  const auto& volatile_functions =
      catalog_.volatile_functions.empty() ? VolatileBuiltins() : catalog_.volatile_functions;
  for (const std::string& f : info.functions) {
    if (volatile_functions.contains(f)) {
      // Its two executions may differ, and may change state where they run.
      shadow->skip_reason = StrCat("it calls ", f, "(), which PostgreSQL marks volatile");
      break;
    }
  }
  return shadow;
}

// What MakePlan learns of a Query's statements before it rewrites them.
struct Router::PlanDraft {
  std::vector<StatementInfo> infos;
  std::vector<TableRename> renames;
  // The server each statement needs (none: it names no table).
  std::vector<std::optional<BackendId>> statement_servers;
  // Statement index -> the table it writes in a mirrored phase.
  std::vector<std::pair<size_t, const TableConfig*>> mirrored;
  // Runs of consecutive statements for one server (first statement,
  // server); a statement that names no table goes with the run it is in.
  std::vector<std::pair<size_t, BackendId>> runs;
};

namespace {

// The first refusal stands.
void Refuse(Plan& plan, Refusal refusal) {
  if (!plan.refusal) plan.refusal = std::move(refusal);
}
void Refuse(Plan& plan, std::string message) {
  Refuse(plan, Refusal{std::string(protocol::sqlstate::kFeatureNotSupported), std::move(message)});
}

// A table the coordinated migration has past old-only that this file
// does not configure: on old alone, its writes would bypass the mirror.
std::optional<Refusal> UnconfiguredRefusal(const Config& config, const std::string& name) {
  auto migrating = config.unconfigured_migrating.find(name);
  if (migrating == config.unconfigured_migrating.end()) return std::nullopt;
  return Refusal{std::string(protocol::sqlstate::kCannotConnectNow),
                 StrCat("pgshift: table ", name, " is in ", PhaseName(migrating->second),
                        " in the coordinated migration, but this instance's file (", config.source,
                        ") has no [[tables]] entry for it; statements on it are "
                        "refused here so that none bypasses the migration: add the table to the "
                        "file and reload")};
}

// Why statement `i`, which writes `table`, cannot run in the table's phase.
std::optional<std::string> WriteRefusal(const ParseTree& tree, size_t i, const StatementInfo& info,
                                        const TableConfig& table) {
  const std::string_view phase = PhaseName(table.phase);
  if (info.kind == StatementKind::kDdl && table.phase != Phase::kOldOnly) {
    return StrCat("pgshift: DDL on ", table.name, " is refused in phase ", phase,
                  "; change the old and new tables directly");
  }
  if (!MirrorsWrites(table.phase)) return std::nullopt;
  switch (info.kind) {
    case StatementKind::kInsert:
    case StatementKind::kUpdate:
    case StatementKind::kDelete:
    case StatementKind::kTruncate: return std::nullopt;
    case StatementKind::kRead:
      return StrCat("pgshift: cannot mirror this write to ", table.name, " in phase ", phase,
                    ": the table is written inside WITH, where its rows cannot be mirrored");
    default: break;
  }
  if (tree.get()->stmts[i]->stmt->node_case == PG_QUERY__NODE__NODE_PREPARE_STMT) {
    // Its EXECUTE would not be seen as a write.
    return StrCat("pgshift: cannot mirror a write to ", table.name, " in phase ", phase,
                  " prepared with SQL PREPARE; send it as it is, or prepare it with the "
                  "protocol's Parse message (as drivers do)");
  }
  return StrCat("pgshift: cannot mirror ", StatementKindName(info.kind), " on ", table.name,
                " in phase ", phase, "; use INSERT, UPDATE or DELETE");
}

std::vector<std::pair<size_t, BackendId>> Runs(
    const std::vector<std::optional<BackendId>>& statement_servers) {
  std::vector<std::pair<size_t, BackendId>> runs;
  for (size_t i = 0; i < statement_servers.size(); ++i) {
    if (!statement_servers[i]) continue;
    if (runs.empty()) {
      runs.emplace_back(0, *statement_servers[i]);
    } else if (runs.back().second != *statement_servers[i]) {
      runs.emplace_back(i, *statement_servers[i]);
    }
  }
  return runs;
}

// Each run is its own implicit transaction: only the last may write, so
// that a failure after a write cannot leave the write committed.
void RefuseSplitWrites(const std::vector<StatementInfo>& infos,
                       const std::vector<std::pair<size_t, BackendId>>& runs, Plan& plan) {
  if (runs.size() <= 1 || plan.refusal) return;
  if (plan.transaction_control) {
    Refuse(plan,
           "pgshift: with two servers, send transaction control (BEGIN, COMMIT, ROLLBACK, "
           "SAVEPOINT, ...) in a query of its own, not with statements on migrating tables");
  }
  for (size_t r = 0; r + 1 < runs.size(); ++r) {
    for (size_t i = runs[r].first; i < runs[r + 1].first; ++i) {
      if (IsWriteKind(infos[i].kind) || !infos[i].writes.empty()) {
        Refuse(plan, StrCat("pgshift: this query writes on server ", BackendName(runs[r].second),
                            " and then runs statements on server ", BackendName(runs[r + 1].second),
                            "; a failure there could not undo the write: send them separately"));
      }
    }
  }
}

// Each run of statements, rewritten, as a part of its own.
absl::Status SplitIntoParts(ParseTree& tree, const std::vector<std::pair<size_t, BackendId>>& runs,
                            size_t statements, Plan& plan) {
  for (size_t r = 0; r < runs.size() && runs.size() > 1; ++r) {
    size_t end = r + 1 < runs.size() ? runs[r + 1].first : statements;
    absl::StatusOr<std::string> text = tree.Deparse(runs[r].first, end);
    if (!text.ok()) return text.status();
    PlanPart& part = plan.parts.emplace_back();
    part.server = runs[r].second;
    part.sql = *std::move(text);
    if (!plan.shapes.empty()) {
      part.shapes.assign(plan.shapes.begin() + static_cast<std::ptrdiff_t>(runs[r].first),
                         plan.shapes.begin() + static_cast<std::ptrdiff_t>(end));
    }
  }
  return absl::OkStatus();
}

}  // namespace

PlanPtr Router::MakePlan(std::string_view sql) const {
  PlanPtr made = PlanText(sql);
  if (made->refused_tables.empty()) return made;
  std::vector<std::string> tables;
  for (const TableCounters* t : made->refused_tables) {
    if (std::find(tables.begin(), tables.end(), t->table) == tables.end())
      tables.push_back(t->table);
  }
  auto plan = std::make_shared<Plan>(*made);
  plan->fingerprint = counters_.fingerprints().For(sql, std::move(tables), plan->writes);
  return plan;
}

PlanPtr Router::PlanText(std::string_view sql) const {
  auto plan = std::make_shared<Plan>();
  plan->sql = std::string(sql);
  absl::StatusOr<ParseTree> tree = ParseTree::Parse(sql);
  if (!tree.ok()) return plan;  // old's parser reports the syntax error

  PlanDraft draft;
  draft.infos = AnalyzeTree(*tree);
  const std::vector<StatementInfo>& infos = draft.infos;
  if (has_new_server()) {
    plan->statements = SplitAtTransactionControl(*tree, infos);
    if (!plan->statements.empty()) {
      plan->transaction_control = true;
      return plan;
    }
  }
  if (infos.size() == 1 && infos[0].kind == StatementKind::kCopy && infos[0].writes.size() == 1) {
    const std::string& name = *infos[0].writes.begin();
    for (const TableConfig& t : config_->tables) {
      if (t.name == name && MirrorsWrites(t.phase)) return CopyPlan(*tree, t);
    }
  }
  for (size_t i = 0; i < infos.size(); ++i) PlaceStatement(*tree, i, draft, *plan);
  draft.runs = Runs(draft.statement_servers);
  if (!draft.runs.empty()) plan->server = draft.runs.back().second;
  RefuseSplitWrites(infos, draft.runs, *plan);
  if (infos.size() == 1 && infos[0].kind == StatementKind::kTransaction) {
    const PgQuery__TransactionStmt& t = *tree->get()->stmts[0]->stmt->transaction_stmt;
    plan->transaction = TransactionKindOf(t.kind);
    if (t.gid != nullptr) plan->gid = t.gid;
  }
  if (infos.size() == 1 && tree->get()->stmts[0]->stmt != nullptr &&
      tree->get()->stmts[0]->stmt->node_case == PG_QUERY__NODE__NODE_PREPARE_STMT) {
    plan->prepares = tree->get()->stmts[0]->stmt->prepare_stmt->name;
  }
  if (!plan->refusal && infos.size() == 1 && infos[0].kind == StatementKind::kRead) {
    plan->shadow = ShadowFor(sql, infos[0]);
  }
  if (plan->refusal ||
      (draft.renames.empty() && draft.mirrored.empty() && draft.runs.size() <= 1)) {
    return plan;
  }
  absl::Status rewritten = RewriteTree(*tree, draft.renames);
  if (rewritten.ok()) rewritten = AddMirrors(*tree, draft, *plan);
  if (rewritten.ok()) rewritten = SplitIntoParts(*tree, draft.runs, infos.size(), *plan);
  if (rewritten.ok()) {
    absl::StatusOr<std::string> text = tree->Deparse();
    if (text.ok()) {
      plan->sql = *std::move(text);
      plan->rewritten = true;
      return plan;
    }
    rewritten = text.status();
  }
  Refuse(*plan, std::string(MessageOf(rewritten)));
  return plan;
}

void Router::PlaceStatement(const ParseTree& tree, size_t i, PlanDraft& draft, Plan& plan) const {
  const StatementInfo& info = draft.infos[i];
  if (info.kind == StatementKind::kTransaction) plan.transaction_control = true;
  if (IsWriteKind(info.kind) || !info.writes.empty()) plan.writes = true;
  if (auto why = TruncateCascadeRefusal(tree.get()->stmts[i]->stmt, *config_)) Refuse(plan, *why);
  std::set<std::string> tables = info.reads;
  tables.insert(info.writes.begin(), info.writes.end());
  std::set<BackendId> servers;
  std::vector<std::string> placements;  // "public.channels (new-only, on new)", for refusals
  for (const std::string& name : tables) {
    if (name == kCopyStaging) continue;  // pgshift's own, wherever the COPY runs
    auto table = std::find_if(config_->tables.begin(), config_->tables.end(),
                              [&](const TableConfig& t) { return t.name == name; });
    if (table == config_->tables.end()) {
      if (auto why = UnconfiguredRefusal(*config_, name)) Refuse(plan, *std::move(why));
      servers.insert(BackendId::kOld);
      placements.push_back(StrCat(name, " (not migrating, on old)"));
      continue;
    }
    const BackendId server = PlaceTable(tree, i, *table, draft, plan);
    servers.insert(server);
    placements.push_back(
        StrCat(name, " (", PhaseName(table->phase), ", on ", BackendName(server), ")"));
  }
  if (servers.size() > 1) {
    std::sort(placements.begin(), placements.end());
    placements.erase(std::unique(placements.begin(), placements.end()), placements.end());
    std::string list;
    for (const std::string& p : placements) list = list.empty() ? p : StrCat(list, ", ", p);
    Refuse(plan, StrCat("pgshift: this statement needs tables that are answered by different "
                        "servers: ",
                        list));
  }
  draft.statement_servers.push_back(servers.empty() ? std::nullopt
                                                    : std::optional(*servers.begin()));
}

BackendId Router::PlaceTable(const ParseTree& tree, size_t i, const TableConfig& table,
                             PlanDraft& draft, Plan& plan) const {
  const StatementInfo& info = draft.infos[i];
  TableCounters& counters = counters_.For(table.name);
  const bool written = info.writes.contains(table.name);
  if (written) {
    if (std::optional<std::string> why = WriteRefusal(tree, i, info, table)) {
      Refuse(plan, *std::move(why));
    } else if (MirrorsWrites(table.phase)) {
      draft.mirrored.emplace_back(i, &table);
    }
  }
  (written ? plan.writes_to : plan.reads).push_back(&counters);
  plan.refused_tables.push_back(&counters);
  if (!ReadsFromNew(table.phase)) return BackendId::kOld;
  AddRename(table, draft.renames);
  return has_new_server() ? BackendId::kNew : BackendId::kOld;
}

void Router::AddRename(const TableConfig& table, std::vector<TableRename>& renames) const {
  auto [new_schema, new_name] = SplitQualified(table.new_name);
  auto [old_schema, old_name] = SplitQualified(table.name);
  if (new_schema == old_schema && new_name == old_name && table.columns.empty() &&
      table.old_columns.empty() && table.new_columns.empty()) {
    return;
  }
  // Named captures: clang 14 cannot capture structured bindings.
  bool known = std::any_of(renames.begin(), renames.end(),
                           [&schema = old_schema, &name = old_name](const TableRename& r) {
                             return r.old_schema == schema && r.old_name == name;
                           });
  if (known) return;
  TableRename rename{old_schema, old_name, new_schema, new_name, table.columns, nullptr};
  SetCatalogColumns(table, rename);
  renames.push_back(std::move(rename));
}

absl::Status Router::AddMirrors(ParseTree& tree, const PlanDraft& draft, Plan& plan) const {
  for (const auto& [index, table] : draft.mirrored) {
    absl::StatusOr<MirrorSpec> spec = MirrorSpecFor(*table);
    if (!spec.ok()) return spec.status();
    plan.shapes.resize(draft.infos.size());
    ResultShape& shape = plan.shapes[index];
    const bool truncate = draft.infos[index].kind == StatementKind::kTruncate;
    if (!spec->remote) {
      absl::Status done = truncate ? MirrorTruncate(tree, index, *spec)
                                   : MirrorStatement(tree, index, *spec, shape);
      if (!done.ok()) return done;
      continue;
    }
    auto remote = MakeRemoteMirror(*spec, *table, tree.get()->stmts[index]->stmt->node_case);
    if (!remote.ok()) return remote.status();
    plan.mirrors_remotely = true;
    if (truncate && shape.remote) {
      // TRUNCATE of several mirrored tables truncates their mirrors together.
      auto both = std::make_shared<RemoteMirror>(*shape.remote);
      both->table = StrCat(both->table, ", ", (*remote)->table);
      both->apply_sql = StrCat(both->apply_sql, ", ", (*remote)->apply_sql.substr(9));
      if ((*remote)->on_error == MirrorErrorPolicy::kFail)
        both->on_error = MirrorErrorPolicy::kFail;
      both->pipelined = both->pipelined && (*remote)->pipelined;
      shape.remote = both;
      continue;
    }
    shape.remote = *remote;
    if (truncate) continue;
    absl::Status done = MirrorStatement(tree, index, *spec, shape);
    if (!done.ok()) return done;
  }
  for (const auto& [index, table] : draft.mirrored) {
    if (draft.infos[index].kind != StatementKind::kTruncate) {
      plan.shapes[index].counts_rows = &counters_.For(table->name);
    }
  }
  return absl::OkStatus();
}

}  // namespace pgshift::routing
