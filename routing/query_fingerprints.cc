#include "routing/query_fingerprints.h"

#include <chrono>

#include "routing/shadow.h"

namespace pgshift::routing {

void QueryFingerprint::Seen(bool was_refused) {
  (was_refused ? refused : executions).fetch_add(1, std::memory_order_relaxed);
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  last_seen_ms.store(std::chrono::duration_cast<std::chrono::milliseconds>(now).count(),
                     std::memory_order_relaxed);
}

QueryFingerprint* QueryFingerprints::For(std::string_view sql, std::vector<std::string> tables,
                                         bool writes) {
  const std::string text(sql);
  std::string fingerprint = Fingerprint(text);
  if (fingerprint.empty()) return nullptr;
  absl::MutexLock lock(&mutex_);
  auto it = entries_.find(fingerprint);
  if (it != entries_.end()) return it->second.get();
  if (entries_.size() >= max_entries_) {
    untracked_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  auto entry = std::make_unique<QueryFingerprint>();
  entry->fingerprint = fingerprint;
  entry->normalized = Normalize(text);
  entry->tables = std::move(tables);
  entry->writes = writes;
  QueryFingerprint* kept = entry.get();
  entries_.emplace(std::move(fingerprint), std::move(entry));
  return kept;
}

std::vector<QueryFingerprints::Row> QueryFingerprints::Rows() const {
  absl::MutexLock lock(&mutex_);
  std::vector<Row> rows;
  rows.reserve(entries_.size());
  for (const auto& [key, e] : entries_) {
    rows.push_back({e->fingerprint, e->normalized, e->tables, e->writes,
                    e->executions.load(std::memory_order_relaxed),
                    e->refused.load(std::memory_order_relaxed),
                    e->last_seen_ms.load(std::memory_order_relaxed)});
  }
  return rows;
}

}  // namespace pgshift::routing
