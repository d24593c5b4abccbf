#include "routing/writes_in_flight.h"

#include <algorithm>

namespace pgshift::routing {

WritesInFlight::Hold& WritesInFlight::Hold::operator=(Hold&& other) noexcept {
  if (this == &other) return *this;
  Release();
  record_ = std::exchange(other.record_, nullptr);
  keys_ = std::exchange(other.keys_, {});
  tables_ = std::exchange(other.tables_, {});
  held_per_table_ = std::exchange(other.held_per_table_, {});
  committing_ = std::exchange(other.committing_, false);
  return *this;
}

void WritesInFlight::Hold::Add(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& keys) {
  if (record_ == nullptr || keys.empty()) return;
  std::vector<std::string> whole;
  {
    absl::MutexLock lock(&record_->mutex_);
    for (const auto& [table, key] : keys) {
      if (std::find(tables_.begin(), tables_.end(), table) != tables_.end()) continue;
      size_t& held = held_per_table_[table];
      if (!key || held >= kMaxHeldKeys) {
        if (std::find(whole.begin(), whole.end(), table) == whole.end()) whole.push_back(table);
        continue;
      }
      ++held;
      TableState& state = record_->tables_[table];
      KeyState& k = state.keys[*key];
      ++k.holds;
      ++state.holds;
      if (committing_) {
        ++k.committing;
        ++state.committing;
      }
      keys_.emplace_back(table, *key);
    }
  }
  for (const std::string& table : whole) AddTable(table);
}

void WritesInFlight::Hold::AddTable(const std::string& table) {
  if (record_ == nullptr || std::find(tables_.begin(), tables_.end(), table) != tables_.end()) {
    return;
  }
  absl::MutexLock lock(&record_->mutex_);
  TableState& state = record_->tables_[table];
  ++state.whole_holds;
  ++state.holds;
  if (committing_) {
    ++state.whole_committing;
    ++state.committing;
  }
  tables_.push_back(table);
}

void WritesInFlight::Hold::Committing() {
  if (record_ == nullptr || empty() || committing_) return;
  committing_ = true;
  absl::MutexLock lock(&record_->mutex_);
  for (const auto& [table, key] : keys_) {
    TableState& state = record_->tables_[table];
    ++state.keys[key].committing;
    ++state.committing;
  }
  for (const std::string& table : tables_) {
    TableState& state = record_->tables_[table];
    ++state.whole_committing;
    ++state.committing;
  }
}

void WritesInFlight::Hold::Release() {
  if (record_ == nullptr || empty()) return;
  const Clock::time_point now = Clock::now();
  const int committing = committing_ ? 1 : 0;
  committing_ = false;
  absl::MutexLock lock(&record_->mutex_);
  for (const auto& [table, key] : keys_) {
    TableState& state = record_->tables_[table];
    KeyState& k = state.keys[key];
    --k.holds;
    k.committing -= committing;
    state.committing -= committing;
    k.settled = now;
    --state.holds;
    state.settled = now;
  }
  for (const std::string& table : tables_) {
    TableState& state = record_->tables_[table];
    --state.whole_holds;
    --state.holds;
    state.whole_committing -= committing;
    state.committing -= committing;
    state.settled = now;
    state.whole_settled = now;
  }
  for (const auto& [table, held] : held_per_table_) {
    TableState& state = record_->tables_[table];
    if (state.keys.size() > kMaxKeysPerTable) record_->Forget(state);
  }
  keys_.clear();
  tables_.clear();
  held_per_table_.clear();
}

void WritesInFlight::Forget(TableState& table) {
  for (auto it = table.keys.begin(); it != table.keys.end();) {
    if (it->second.holds == 0) {
      table.forgotten = std::max(table.forgotten, it->second.settled);
      table.keys.erase(it++);
    } else {
      ++it;
    }
  }
}

bool WritesInFlight::Explains(const std::string& table, const std::string& key,
                              Clock::time_point began) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto t = tables_.find(table);
  if (t == tables_.end()) return false;
  const TableState& state = t->second;
  if (state.whole_holds > 0 || state.whole_settled >= began) return true;
  auto k = state.keys.find(key);
  if (k == state.keys.end()) return state.forgotten >= began;
  return k->second.holds > 0 || k->second.settled >= began;
}

bool WritesInFlight::Quiet(const std::string& table, Clock::time_point began) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto t = tables_.find(table);
  return t == tables_.end() || (t->second.holds == 0 && t->second.settled < began);
}

bool WritesInFlight::Writing(const std::string& table, const std::string& key) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto t = tables_.find(table);
  if (t == tables_.end()) return false;
  if (t->second.whole_holds > 0) return true;
  auto k = t->second.keys.find(key);
  return k != t->second.keys.end() && k->second.holds > 0;
}

bool WritesInFlight::Writing(const std::string& table) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto t = tables_.find(table);
  return t != tables_.end() && t->second.holds > 0;
}

bool WritesInFlight::Committing(const std::string& table,
                                const std::vector<std::optional<std::string>>& keys) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto t = tables_.find(table);
  if (t == tables_.end() || t->second.committing == 0) return false;
  if (t->second.whole_committing > 0) return true;
  for (const std::optional<std::string>& key : keys) {
    if (!key) return true;
    auto k = t->second.keys.find(*key);
    if (k != t->second.keys.end() && k->second.committing > 0) return true;
  }
  return false;
}

size_t WritesInFlight::KeysOnRecord(const std::string& table) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto t = tables_.find(table);
  return t == tables_.end() ? 0 : t->second.keys.size();
}

}  // namespace pgshift::routing
