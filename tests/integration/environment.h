// One PostgreSQL cluster for the whole integration test binary.
#pragma once

#include "tests/support/pg_cluster.h"

namespace pgshift::testing {

PgCluster& Cluster();

}  // namespace pgshift::testing
