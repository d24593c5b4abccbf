#include "proxy/session/refusals.h"

#include "common/strings.h"
#include "protocol/crypto.h"

namespace pgshift::proxy {

namespace {

const std::string& Nonce() {
  static const std::string nonce = [] {
    unsigned char bytes[8];
    protocol::FillRandom(bytes, sizeof(bytes));
    return HexOf(std::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
  }();
  return nonce;
}

std::string Marker() { return StrCat("pgshift refusal ", Nonce(), " "); }

}  // namespace

void Refusals::Set(uint64_t n, protocol::ErrorFields error) { pending_[n] = std::move(error); }

uint64_t Refusals::Add(protocol::ErrorFields error) {
  uint64_t n = Reserve();
  Set(n, std::move(error));
  while (pending_.size() > kMaxPending) pending_.erase(pending_.begin());
  return n;
}

std::string Refusals::ProbeName(uint64_t n) { return StrCat(Marker(), n); }

// In pg_catalog, where no client can create the relation, whatever its
// search_path.
std::string Refusals::ProbeSql(uint64_t n) {
  return StrCat("SELECT FROM pg_catalog.\"", ProbeName(n), "\"");
}

std::string Refusals::ProbeStatementName() { return StrCat("pgshift_probe_", Nonce()); }

std::optional<protocol::ErrorFields> Refusals::Take(std::string_view message) {
  if (pending_.empty()) return std::nullopt;
  const std::string marker = Marker();
  size_t at = message.find(marker);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = message.substr(at + marker.size());
  size_t end = rest.find('"');
  int64_t n = 0;
  if (end == std::string_view::npos || !ParseInt(rest.substr(0, end), n)) return std::nullopt;
  auto it = pending_.find(static_cast<uint64_t>(n));
  if (it == pending_.end()) return std::nullopt;
  protocol::ErrorFields error = std::move(it->second);
  pending_.erase(pending_.begin(), std::next(it));
  return error;
}

}  // namespace pgshift::proxy
