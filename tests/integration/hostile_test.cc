// Hundreds of hostile connections beside a pgbench load through the same
// pgshift: random bytes, truncated and impossible lengths, oversized startup
// packets, a 1 GiB length followed by silence, and after a login a Bind
// whose parameters do not match, CopyData outside COPY, garbage. The load
// sees no error, every hostile connection ends, pgshift's resident memory
// comes back near where it was, and a fresh client connects.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "protocol/messages/bind.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "protocol/wire.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"

namespace pgshift::testing {
namespace {

// Resident memory of `pid` in kB, from /proc.
int64_t ResidentKb(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stoll(line.substr(6));
  }
  return -1;
}

std::string Length(int32_t length) {
  std::string out(4, '\0');
  protocol::WriteBigEndian32(out.data(), length);
  return out;
}

std::string Message(char type, int32_t length, std::string_view body = {}) {
  return std::string(1, type) + Length(length) + std::string(body);
}

enum class Hostility {
  kRandomBytes,
  kTruncatedStartup,
  kLengthZero,
  kLengthThree,
  kLengthMax,
  kLengthNegative,
  kGibibyteThenSilence,
  kStartupOverTheLimit,
  kMismatchedBind,
  kCopyDataOutsideCopy,
  kGibibyteMessageThenSilence,
  kGarbageAfterLogin,
  kCount,
};

// One hostile connection; false when it did not end as it should have.
bool Attack(int port, Hostility kind, std::mt19937& random) {
  RawClient c(port, 6000);
  if (!c.connected()) return false;
  std::string noise(1 + random() % 300, '\0');
  for (char& ch : noise) ch = static_cast<char>(random());
  switch (kind) {
    case Hostility::kRandomBytes:
      c.Send(noise);
      return c.WaitForClose();  // at once, or at login_timeout
    case Hostility::kTruncatedStartup:
      c.Send(Length(100) + std::string(20, 'x'));
      return c.WaitForClose();
    case Hostility::kLengthZero: c.Send(Length(0)); return c.WaitForClose();
    case Hostility::kLengthThree: c.Send(Length(3)); return c.WaitForClose();
    case Hostility::kLengthMax: c.Send(Length(INT32_MAX)); return c.WaitForClose();
    case Hostility::kLengthNegative: c.Send(Length(INT32_MIN)); return c.WaitForClose();
    case Hostility::kGibibyteThenSilence: c.Send(Length(1 << 30)); return c.WaitForClose();
    case Hostility::kStartupOverTheLimit:
      c.Send(Length(20000) + std::string(19996, 'u'));
      return c.WaitForClose();
    default: break;
  }
  if (c.Login("postgres") != std::nullopt) return false;
  std::string out;
  switch (kind) {
    case Hostility::kMismatchedBind: {
      protocol::Parse{"", "SELECT $1::int", {}}.Encode(out);
      protocol::Bind bind;
      bind.parameters = {std::string("1"), std::string("2")};
      bind.Encode(out);
      protocol::Execute{"", 0}.Encode(out);
      protocol::Sync{}.Encode(out);
      c.Send(out);
      auto error = c.ReadError();
      return error && error->sqlstate() == "08P01";  // the server's: the session goes on
    }
    case Hostility::kCopyDataOutsideCopy: {
      out = Message('d', 4 + 5, "stray") + Message('c', 4);
      protocol::Query{"SELECT 42"}.Encode(out);
      c.Send(out);
      // The server ignores the stray COPY messages, as the protocol says.
      for (auto m = c.Read(); m; m = c.Read()) {
        if (m->type == 'Z') return true;
        if (m->type == 'E') return false;
      }
      return false;
    }
    case Hostility::kGibibyteMessageThenSilence:
      c.Send(Message('Q', 1 << 30, "SELECT"));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      return true;  // nothing was allocated for it; the client leaves
    case Hostility::kGarbageAfterLogin:
      c.Send(Message('\x01', 4 + static_cast<int32_t>(noise.size()), noise));
      return c.ReadError() && c.WaitForClose();
    default: return false;
  }
}

TEST(HostileClients, HundredsOfBadConnectionsBesideALoadHarmNothing) {
  PgConn admin(Cluster().ConnInfo("dbname=postgres"));
  ASSERT_TRUE(admin.Ok("DROP DATABASE IF EXISTS hostile"));
  ASSERT_TRUE(admin.Ok("CREATE DATABASE hostile"));
  std::string out;
  ASSERT_EQ(CaptureCommand("pgbench -i -s 1 -q -h 127.0.0.1 -p " +
                               std::to_string(Cluster().port()) + " -U postgres hostile 2>&1",
                           out),
            0)
      << out;
  // Logins that stall are closed after a second (login_timeout); slots for
  // those still logging in are plenty, so pgbench's own logins are never
  // turned away.
  PgshiftProcess proxy(Cluster().port(), "login_timeout = 1\nmax_logins = 1000");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();

  std::string load_output;
  int load_status = -1;
  std::thread load([&] {
    load_status = CaptureCommand("pgbench -n -c 4 -j 2 -T 8 -h 127.0.0.1 -p " +
                                     std::to_string(proxy.port()) + " -U postgres hostile 2>&1",
                                 load_output);
  });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const int64_t before_kb = ResidentKb(proxy.pid());

  constexpr int kThreads = 20, kPerThread = 15;  // 300 connections
  std::atomic<int> failed{0};
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> attackers;
  for (int t = 0; t < kThreads; ++t) {
    attackers.emplace_back([&, t] {
      std::mt19937 random(static_cast<uint32_t>(t));
      for (int i = 0; i < kPerThread; ++i) {
        auto kind =
            static_cast<Hostility>((t * kPerThread + i) % static_cast<int>(Hostility::kCount));
        if (!Attack(proxy.port(), kind, random)) {
          ++failed;
          failures[static_cast<size_t>(t)] += std::to_string(static_cast<int>(kind)) + " ";
        }
      }
    });
  }
  for (std::thread& a : attackers) a.join();
  std::string failed_kinds;
  for (const std::string& f : failures) failed_kinds += f;
  EXPECT_EQ(failed.load(), 0) << "hostile kinds that did not end as they should: " << failed_kinds;
  load.join();

  EXPECT_EQ(load_status, 0) << load_output;
  EXPECT_NE(load_output.find("number of failed transactions: 0 "), std::string::npos)
      << load_output;
  // Every session of the attack is gone, and what they held with them.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const int64_t after_kb = ResidentKb(proxy.pid());
  EXPECT_LT(after_kb, before_kb + 64 * 1024) << "before " << before_kb << " kB, after " << after_kb;
  std::printf("pgshift resident memory: %lld kB before the attack, %lld kB after\n",
              static_cast<long long>(before_kb), static_cast<long long>(after_kb));
  EXPECT_EQ(PgConn(proxy.ConnInfo("dbname=hostile")).Value("SELECT count(*) FROM pgbench_branches"),
            "1");
  EXPECT_EQ(proxy.Stop(), 0) << proxy.LogEnd();
}

}  // namespace
}  // namespace pgshift::testing
