// Analysing SQL costs a parse; applications send the same texts over and
// over. The cache keeps analyses by statement text, and the filter lets a
// statement that cannot touch a configured table skip analysis altogether.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "routing/config.h"
#include "routing/sql_analysis.h"

namespace pgshift::routing {

using AnalysisPtr = std::shared_ptr<const std::vector<StatementInfo>>;

// Analyses by exact statement text, the most recently used `capacity` kept.
// An analysis depends on the text alone, so the cache outlives reloads.
// Safe to share between threads.
class AnalysisCache {
 public:
  explicit AnalysisCache(size_t capacity) : capacity_(capacity) {}

  // The analysis of `sql`, cached or made now. Syntax errors are not cached.
  absl::StatusOr<AnalysisPtr> Get(std::string_view sql);

  size_t size() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  using Entry = std::pair<std::string, AnalysisPtr>;

  const size_t capacity_;
  mutable absl::Mutex mutex_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mutex_);  // most recent first
  absl::flat_hash_map<std::string, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mutex_);
  uint64_t hits_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mutex_) = 0;
};

// The fast path's test: could this text name a configured table? It looks
// for each table's own name (case-insensitively) anywhere in the text, so it
// errs only toward "maybe": a mention in a string or comment costs a parse,
// never a wrong route. Text with a Unicode-escaped identifier (U&"...") is
// always "maybe", since the name need not appear in it literally.
class TableMentionFilter {
 public:
  explicit TableMentionFilter(const Config& config);
  bool MayMention(std::string_view sql) const;

 private:
  std::vector<std::string> names_;  // lower case, unqualified, both old and new names
};

}  // namespace pgshift::routing
