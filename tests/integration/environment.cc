#include "tests/integration/environment.h"

#include <gtest/gtest.h>

#include <memory>

namespace pgshift::testing {

namespace {

std::unique_ptr<PgCluster> g_cluster;

class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    g_cluster = std::make_unique<PgCluster>();
    ASSERT_TRUE(g_cluster->ok()) << "could not start the test PostgreSQL cluster";
  }
  void TearDown() override { g_cluster.reset(); }
};

}  // namespace

PgCluster& Cluster() { return *g_cluster; }

}  // namespace pgshift::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new pgshift::testing::ClusterEnvironment);
  return RUN_ALL_TESTS();
}
