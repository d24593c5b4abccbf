// Brings new to the settings the client gave old (SET, RESET, DISCARD ALL,
// BEGIN's modes), which ran on old only, before new answers for the
// session: outside a transaction the session's, inside one the changes of
// the transaction it has not run yet. A change new refuses is logged; the
// statement goes ahead, as it would on a server whose setting differs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/asio.h"
#include "proxy/session/internal_port.h"
#include "proxy/session/link.h"
#include "routing/session_settings.h"

namespace pgshift::proxy {

class SettingsSync {
 public:
  SettingsSync(InternalPort& port, const routing::SessionSettings& client, uint64_t session)
      : port_(port), client_(client), session_(session) {}

  // Whether Sync has anything to do on `link`: checked first, so that the
  // steps that have none (nearly all) start no coroutine for it.
  bool Behind(const Link& link) const;
  // Once the link's transaction status is known (nothing awaited there).
  awaitable<void> Sync(Link& link);

 private:
  awaitable<void> Run(Link& link, const std::vector<std::string>& statements, bool in_transaction);

  InternalPort& port_;
  const routing::SessionSettings& client_;
  const uint64_t session_;
};

}  // namespace pgshift::proxy
