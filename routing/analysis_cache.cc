#include "routing/analysis_cache.h"

#include <algorithm>
#include <cctype>

#include "common/strings.h"

namespace pgshift::routing {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Unqualified(std::string_view name) {
  size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

}  // namespace

absl::StatusOr<AnalysisPtr> AnalysisCache::Get(std::string_view sql) {
  {
    absl::MutexLock lock(&mutex_);
    auto it = index_.find(ToAbsl(sql));
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++hits_;
      return it->second->second;
    }
    ++misses_;
  }
  // Parsed outside the lock: two threads may both parse a new text; the
  // second insert finds the first and keeps it.
  auto analysis = AnalyzeSql(sql);
  if (!analysis.ok()) return analysis.status();
  auto shared = std::make_shared<const std::vector<StatementInfo>>(std::move(*analysis));
  absl::MutexLock lock(&mutex_);
  auto [it, inserted] = index_.try_emplace(std::string(sql));
  if (!inserted) return it->second->second;
  lru_.emplace_front(std::string(sql), shared);
  it->second = lru_.begin();
  if (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return shared;
}

size_t AnalysisCache::size() const {
  absl::MutexLock lock(&mutex_);
  return lru_.size();
}

uint64_t AnalysisCache::hits() const {
  absl::MutexLock lock(&mutex_);
  return hits_;
}

uint64_t AnalysisCache::misses() const {
  absl::MutexLock lock(&mutex_);
  return misses_;
}

TableMentionFilter::TableMentionFilter(const Config& config) {
  for (const TableConfig& t : config.tables) {
    for (std::string_view name : {std::string_view(t.name), std::string_view(t.new_name)}) {
      std::string bare = Lower(Unqualified(name));
      if (std::find(names_.begin(), names_.end(), bare) == names_.end()) names_.push_back(bare);
    }
  }
}

bool TableMentionFilter::MayMention(std::string_view sql) const {
  if (names_.empty()) return false;
  // Folded once into a per-thread buffer; then each name is a plain find.
  thread_local std::string folded;
  folded.assign(sql);
  for (char& c : folded) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  if (folded.find("u&") != std::string::npos) return true;
  for (const std::string& name : names_) {
    if (folded.find(name) != std::string::npos) return true;
  }
  return false;
}

}  // namespace pgshift::routing
