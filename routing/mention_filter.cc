#include "routing/mention_filter.h"

#include <algorithm>
#include <cctype>


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

TableMentionFilter::TableMentionFilter(const Config& config) {
  for (const TableConfig& t : config.tables) Add(t);
  // Refused when named (Router::PlaceStatement): each mention is parsed.
  for (const auto& [name, phase] : config.unconfigured_migrating) {
    truncate_may_cascade_ = truncate_may_cascade_ || MirrorsWrites(phase);
    std::string bare = Lower(Unqualified(name));
    if (std::find(names_.begin(), names_.end(), bare) == names_.end()) names_.push_back(bare);
  }
}

TableMentionFilter::TableMentionFilter(const Config& config, const std::vector<std::string>& only) {
  for (const TableConfig& t : config.tables) {
    if (std::find(only.begin(), only.end(), t.name) != only.end()) Add(t);
  }
}

void TableMentionFilter::Add(const TableConfig& t) {
  truncate_may_cascade_ = truncate_may_cascade_ || MirrorsWrites(t.phase);
  for (std::string_view name : {std::string_view(t.name), std::string_view(t.new_name)}) {
    std::string bare = Lower(Unqualified(name));
    if (std::find(names_.begin(), names_.end(), bare) == names_.end()) names_.push_back(bare);
  }
}

bool TableMentionFilter::MayMention(std::string_view sql) const {
  if (names_.empty()) return false;
  // Folded once into a per-thread buffer; then each name is a plain find.
  thread_local std::string folded;
  folded.assign(sql);
  for (char& c : folded) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  if (folded.find("u&") != std::string::npos) return true;
  if (truncate_may_cascade_ && folded.find("truncate") != std::string::npos) return true;
  for (const std::string& name : names_) {
    if (folded.find(name) != std::string::npos) return true;
  }
  return false;
}

}  // namespace pgshift::routing
