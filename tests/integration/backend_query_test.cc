// pgshift's own queries on a backend connection, against the real cluster.
#include <gtest/gtest.h>

#include "proxy/backend_login.h"
#include "proxy/backend_query.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"

namespace pgshift::proxy {
namespace {

using testing::Cluster;

// Logs in to the test cluster and runs `body` with the connection.
template <typename Body>
void WithBackend(Body body) {
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  routing::BackendConfig backend;
  backend.endpoint = {"127.0.0.1", static_cast<uint16_t>(Cluster().port())};
  backend.sslmode = routing::SslMode::kDisable;
  protocol::StartupMessage startup;
  startup.Set("user", "postgres");
  startup.Set("database", "postgres");
  bool ran = false;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        BackendLoginParams params{.backend_name = "old",
                                  .backend = backend,
                                  .client_startup = startup,
                                  .fallback_password = "",
                                  .tls_context = tls,
                                  .connect_timeout_s = 10};
        BackendLoginResult login = co_await LoginToBackend(params);
        EXPECT_TRUE(std::holds_alternative<BackendLogin>(login));
        if (auto* ok = std::get_if<BackendLogin>(&login)) {
          PacketBuffer buffer;
          co_await body(*ok->stream, buffer);
          ran = true;
        }
      },
      asio::detached);
  io.run_for(std::chrono::seconds(30));
  EXPECT_TRUE(ran) << "the body did not finish";
}

TEST(BackendQuery, RowsNullsAndTags) {
  WithBackend([](Stream& s, PacketBuffer& b) -> awaitable<void> {
    auto r = co_await RunQuery(s, b, "SELECT g AS n, CASE WHEN g = 2 THEN NULL ELSE 'x' || g END "
                                     "AS label FROM generate_series(1, 3) g");
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) co_return;
    EXPECT_EQ(r->columns, (std::vector<std::string>{"n", "label"}));
    EXPECT_EQ(r->rows.size(), 3u);
    EXPECT_EQ(r->rows[0][1], std::optional<std::string>("x1"));
    EXPECT_EQ(r->rows[1][1], std::nullopt);
    EXPECT_EQ(r->tag, "SELECT 3");
  });
}

TEST(BackendQuery, ErrorsLeaveTheConnectionUsable) {
  WithBackend([](Stream& s, PacketBuffer& b) -> awaitable<void> {
    auto r = co_await RunQuery(s, b, "SELECT 1/0");
    EXPECT_FALSE(r.ok());
    EXPECT_NE(std::string(r.status().message()).find("22012 division by zero"), std::string::npos)
        << r.status();
    auto again = co_await RunQuery(s, b, "SELECT 'fine'");
    EXPECT_TRUE(again.ok()) << again.status();
    if (again.ok()) {
      EXPECT_EQ(again->rows.at(0).at(0), std::optional<std::string>("fine"));
    }
  });
}

TEST(BackendQuery, ReadsTableColumnsInOrder) {
  testing::PgConn setup(Cluster().ConnInfo());
  ASSERT_TRUE(setup.Ok("DROP TABLE IF EXISTS catalog_probe, \"Odd \"\"Name\"\"\""));
  ASSERT_TRUE(setup.Ok("CREATE TABLE catalog_probe (id int, title text, dropped int, created_at "
                       "timestamptz)"));
  ASSERT_TRUE(setup.Ok("ALTER TABLE catalog_probe DROP COLUMN dropped"));
  ASSERT_TRUE(setup.Ok("CREATE TABLE \"Odd \"\"Name\"\"\" (\"Mixed Case\" int)"));
  WithBackend([](Stream& s, PacketBuffer& b) -> awaitable<void> {
    auto cols = co_await ReadTableColumns(s, b, "public.catalog_probe");
    EXPECT_TRUE(cols.ok()) << cols.status();
    if (cols.ok()) {
      EXPECT_EQ(*cols, (std::vector<std::string>{"id", "title", "created_at"}));
    }
    auto odd = co_await ReadTableColumns(s, b, "public.Odd \"Name\"");
    EXPECT_TRUE(odd.ok()) << odd.status();
    if (odd.ok()) {
      EXPECT_EQ(*odd, (std::vector<std::string>{"Mixed Case"}));
    }
    auto missing = co_await ReadTableColumns(s, b, "public.no_such_table");
    EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
    auto injected = co_await ReadTableColumns(s, b, "public.x' OR '1'='1");
    EXPECT_TRUE(absl::IsNotFound(injected.status())) << injected.status();
    auto backslash = co_await ReadTableColumns(s, b, "public.a\\' OR true --");
    EXPECT_TRUE(absl::IsNotFound(backslash.status())) << backslash.status();
  });
}

}  // namespace
}  // namespace pgshift::proxy
