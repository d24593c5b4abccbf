// A bounded map from statement text to what was worked out about it, the
// most recently used entries kept, at most `capacity` of them and about
// `max_bytes` (each entry's key plus what `cost` says its value holds).
// Safe to share between threads.
#pragma once

#include <cstdint>
#include <functional>
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
  using Cost = std::function<size_t(const Value&)>;
  explicit LruCache(size_t capacity, size_t max_bytes = SIZE_MAX, Cost cost = nullptr)
      : capacity_(capacity), max_bytes_(max_bytes), cost_(std::move(cost)) {}

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
        return it->second->value;
      }
      ++misses_;
    }
    absl::StatusOr<Value> made = make(key);
    if (!made.ok() || capacity_ == 0) return made;
    const size_t bytes = key.size() + (cost_ ? cost_(*made) : 0);
    if (bytes > max_bytes_) return made;  // it alone would fill the cache
    absl::MutexLock lock(&mutex_);
    auto [it, inserted] = index_.try_emplace(std::string(key));
    if (!inserted) return it->second->value;
    lru_.push_front(Entry{std::string(key), *std::move(made), bytes});
    it->second = lru_.begin();
    bytes_ += bytes;
    while (lru_.size() > capacity_ || bytes_ > max_bytes_) {
      bytes_ -= lru_.back().bytes;
      index_.erase(lru_.back().key);
      lru_.pop_back();
    }
    return lru_.front().value;
  }

  // The cached value for `key`, if there is one.
  std::optional<Value> Find(std::string_view key) {
    absl::MutexLock lock(&mutex_);
    auto it = index_.find(ToAbsl(key));
    if (it == index_.end()) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second);
    ++hits_;
    return it->second->value;
  }

  size_t size() const {
    absl::MutexLock lock(&mutex_);
    return lru_.size();
  }
  size_t bytes() const {
    absl::MutexLock lock(&mutex_);
    return bytes_;
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
  struct Entry {
    std::string key;
    Value value;
    size_t bytes;
  };

  const size_t capacity_;
  const size_t max_bytes_;
  const Cost cost_;
  mutable absl::Mutex mutex_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mutex_);  // most recent first
  absl::flat_hash_map<std::string, typename std::list<Entry>::iterator> index_
      ABSL_GUARDED_BY(mutex_);
  size_t bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t hits_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace pgshift::routing
