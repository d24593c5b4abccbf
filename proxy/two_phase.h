// Mirroring across servers keeps the mirror's side of a transaction
// prepared (PREPARE TRANSACTION) until the authoritative side has committed,
// so that a crash between the two commits loses nothing. At start and on
// reload pgshift readies both servers: it creates the divergence log, learns
// whether each server allows prepared transactions, and finishes the
// prepared transactions a crash left behind by the fate of the
// authoritative transaction each one follows.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "proxy/asio.h"
#include "routing/config.h"
#include "routing/router.h"

namespace pgshift::proxy {

struct MirrorReadiness {
  // Indexed by routing::BackendId: the server allows PREPARE TRANSACTION
  // (max_prepared_transactions > 0).
  std::array<bool, 2> can_prepare{};
};

// Blocks the calling thread for at most the connect timeouts. Only with
// [backends.new]; problems are logged, never fatal.
MirrorReadiness ReadyMirroring(const routing::Config& config, asio::ssl::context& tls);

// "pgshift_old_1234": the mirror of transaction 1234 on the authoritative
// server old.
std::string PreparedTransactionId(routing::BackendId authoritative, std::string_view xid);

}  // namespace pgshift::proxy
