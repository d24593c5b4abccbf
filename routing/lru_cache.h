// A bounded map from statement text to what was worked out about it, the
// most recently used entries kept. Safe to share between threads.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/strings.h"

namespace pgshift::routing {

template <typename Value>
class LruCache {
 public:
  explicit LruCache(size_t capacity) : capacity_(capacity) {}

  // The cached value for `key`, or make(key)'s, which is kept when it is ok.
  // `make` runs outside the lock: two threads may both make a new key's
  // value; the second insert finds the first and keeps it.
  template <typename Make>
  absl::StatusOr<Value> Get(std::string_view key, Make make) {
    {
      absl::MutexLock lock(&mutex_);
      auto it = index_.find(ToAbsl(key));
      if (it != index_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);
        ++hits_;
        return it->second->second;
      }
      ++misses_;
    }
    absl::StatusOr<Value> made = make(key);
    if (!made.ok() || capacity_ == 0) return made;
    absl::MutexLock lock(&mutex_);
    auto [it, inserted] = index_.try_emplace(std::string(key));
    if (!inserted) return it->second->second;
    lru_.emplace_front(std::string(key), *std::move(made));
    it->second = lru_.begin();
    if (lru_.size() > capacity_) {
      index_.erase(lru_.back().first);
      lru_.pop_back();
    }
    return lru_.front().second;
  }

  // The cached value for `key`, if there is one.
  std::optional<Value> Find(std::string_view key) {
    absl::MutexLock lock(&mutex_);
    auto it = index_.find(ToAbsl(key));
    if (it == index_.end()) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second);
    ++hits_;
    return it->second->second;
  }

  size_t size() const {
    absl::MutexLock lock(&mutex_);
    return lru_.size();
  }
  uint64_t hits() const {
    absl::MutexLock lock(&mutex_);
    return hits_;
  }
  uint64_t misses() const {
    absl::MutexLock lock(&mutex_);
    return misses_;
  }

 private:
  using Entry = std::pair<std::string, Value>;

  const size_t capacity_;
  mutable absl::Mutex mutex_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mutex_);  // most recent first
  absl::flat_hash_map<std::string, typename std::list<Entry>::iterator> index_
      ABSL_GUARDED_BY(mutex_);
  uint64_t hits_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace pgshift::routing
