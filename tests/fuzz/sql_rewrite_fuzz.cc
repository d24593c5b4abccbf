// SQL analysis and rewriting of statements that name configured tables:
// parse, analyse, plan (renames, mirrors, splits), deparse. Whatever
// PostgreSQL's parser accepts, what pgshift sends in its place is accepted
// too, for each server (one database, and a second server).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "routing/config.h"
#include "routing/parse_tree.h"
#include "routing/router.h"

namespace {

namespace r = pgshift::routing;

constexpr const char* kTables =
    "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n"
    "columns = { title = \"name\" }\nphase = \"dual-write\"\n"
    "[[tables]]\nname = \"posts\"\nnew_name = \"app.posts\"\nkey = [\"id\", \"n\"]\n"
    "phase = \"new-primary\"\n"
    "[[tables]]\nname = \"tags\"\nnew_name = \"tags_v2\"\nphase = \"shadow-read\"\n"
    "[[tables]]\nname = \"gone\"\nnew_name = \"gone_v2\"\nphase = \"new-only\"\n";

r::Catalog MakeCatalog() {
  r::Catalog c;
  c.old_tables["public.channels"] = {"id", "title", "created_at"};
  c.new_tables["public.channels_v2"] = {"id", "name", "created_at"};
  c.old_tables["public.posts"] = {"id", "n", "body"};
  c.new_tables["app.posts"] = {"id", "n", "body"};
  c.old_tables["public.tags"] = {"label"};
  c.new_tables["public.tags_v2"] = {"label"};
  c.old_tables["public.gone"] = {"a"};
  c.new_tables["public.gone_v2"] = {"a"};
  return c;
}

std::unique_ptr<r::Router> MakeRouter(bool second_server, r::TableCounterRegistry& counters) {
  std::string toml = "[backends.old]\nport = 5432\n";
  if (second_server) toml += "[backends.new]\nport = 5433\n";
  toml += kTables;
  auto config = r::ParseConfig(toml, "fuzz.toml");
  if (!config.ok()) {
    std::fprintf(stderr, "fuzz config: %s\n", std::string(config.status().message()).c_str());
    std::abort();
  }
  return std::make_unique<r::Router>(*config, MakeCatalog(), counters);
}

void Check(r::Router& router, std::string_view sql) {
  r::PlanPtr plan = router.PlanFor(sql);
  auto accepted = [](std::string_view text) { return r::ParseTree::Parse(text).ok(); };
  if (plan->rewritten && !accepted(plan->sql)) {
    std::fprintf(stderr, "rewritten into what the parser rejects:\n%.*s\n->\n%s\n",
                 static_cast<int>(sql.size()), sql.data(), plan->sql.c_str());
    std::abort();
  }
  for (const r::PlanPart& part : plan->parts) {
    if (!accepted(part.sql)) {
      std::fprintf(stderr, "a part the parser rejects:\n%s\n", part.sql.c_str());
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static r::TableCounterRegistry counters;
  static std::unique_ptr<r::Router> one_database = MakeRouter(false, counters);
  static std::unique_ptr<r::Router> two_servers = MakeRouter(true, counters);
  std::string_view sql(reinterpret_cast<const char*>(data), size);
  if (sql.find('\0') != std::string_view::npos) return 0;  // a Query's text cannot hold one
  if (!r::ParseTree::Parse(sql).ok()) return 0;
  Check(*one_database, sql);
  Check(*two_servers, sql);
  return 0;
}
