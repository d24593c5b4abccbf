#include "routing/statement_template.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include <memory>

#include "absl/strings/ascii.h"

#include "common/strings.h"
#include "routing/parse_tree.h"

namespace pgshift::routing {

namespace {

struct ScanDeleter {
  void operator()(PgQuery__ScanResult* r) const { pg_query__scan_result__free_unpacked(r, nullptr); }
};
using Scan = std::unique_ptr<PgQuery__ScanResult, ScanDeleter>;

Scan ScanText(const std::string& text) {
  PgQueryScanResult result = pg_query_scan(text.c_str());
  Scan scan;
  if (result.error == nullptr) {
    scan.reset(pg_query__scan_result__unpack(nullptr, result.pbuf.len,
                                             reinterpret_cast<const uint8_t*>(result.pbuf.data)));
  }
  pg_query_free_scan_result(result);
  return scan;
}

bool IsConstant(PgQuery__Token t) {
  switch (t) {
    case PG_QUERY__TOKEN__ICONST:
    case PG_QUERY__TOKEN__FCONST:
    case PG_QUERY__TOKEN__SCONST:
    case PG_QUERY__TOKEN__USCONST:
    case PG_QUERY__TOKEN__BCONST:
    case PG_QUERY__TOKEN__XCONST:
      return true;
    default:
      return false;
  }
}

bool IsString(PgQuery__Token t) {
  return t == PG_QUERY__TOKEN__SCONST || t == PG_QUERY__TOKEN__USCONST ||
         t == PG_QUERY__TOKEN__BCONST || t == PG_QUERY__TOKEN__XCONST;
}

// A name that may be a type: what a typed literal's string follows.
bool MayNameAType(const PgQuery__ScanToken& t) {
  return t.token == PG_QUERY__TOKEN__IDENT ||
         t.keyword_kind == PG_QUERY__KEYWORD_KIND__UNRESERVED_KEYWORD ||
         t.keyword_kind == PG_QUERY__KEYWORD_KIND__COL_NAME_KEYWORD;
}

// The number of a parameter token ("$12" -> 12).
int ParamNumber(std::string_view text) {
  int n = 0;
  return text.size() > 1 && ParseInt(text.substr(1), n) ? n : 0;
}

}  // namespace

std::optional<StatementTemplate> MakeTemplate(std::string_view sql) {
  std::string text(sql);
  Scan scan = ScanText(text);
  if (!scan) return std::nullopt;
  int max_param = 0;
  std::vector<const PgQuery__ScanToken*> constants;
  for (size_t i = 0; i < scan->n_tokens; ++i) {
    const PgQuery__ScanToken& t = *scan->tokens[i];
    if (t.token == PG_QUERY__TOKEN__PARAM) {
      max_param = std::max(max_param, ParamNumber(sql.substr(t.start, t.end - t.start)));
      continue;
    }
    if (!IsConstant(t.token)) continue;
    if (IsString(t.token) && i > 0 && MayNameAType(*scan->tokens[i - 1])) continue;
    constants.push_back(&t);
  }
  if (constants.empty()) return std::nullopt;
  StatementTemplate out;
  out.first = max_param + 1;
  size_t at = 0;
  for (size_t k = 0; k < constants.size(); ++k) {
    const PgQuery__ScanToken& t = *constants[k];
    out.text.append(sql.substr(at, t.start - at));
    out.text += StrCat("$", out.first + static_cast<int>(k));
    out.constants.push_back(sql.substr(t.start, t.end - t.start));
    at = t.end;
  }
  out.text.append(sql.substr(at));
  return out;
}

bool TemplateText::Split(std::string_view text, int first, size_t count) {
  pieces_.clear();
  Scan scan = ScanText(std::string(text));
  if (!scan) return false;
  size_t at = 0;
  for (size_t i = 0; i < scan->n_tokens; ++i) {
    const PgQuery__ScanToken& t = *scan->tokens[i];
    if (t.token != PG_QUERY__TOKEN__PARAM) continue;
    int n = ParamNumber(text.substr(t.start, t.end - t.start));
    if (n < first || n >= first + static_cast<int>(count)) continue;
    pieces_.push_back({std::string(text.substr(at, t.start - at)), n - first});
    at = t.end;
  }
  pieces_.push_back({std::string(text.substr(at)), -1});
  return true;
}

std::string TemplateText::Fill(const std::vector<std::string_view>& constants) const {
  std::string out;
  for (const Piece& p : pieces_) {
    out += p.text;
    if (p.constant >= 0) out.append(constants[static_cast<size_t>(p.constant)]);
  }
  return out;
}

std::string TemplateText::FillParameters(const std::vector<std::string_view>& constants,
                                         const std::vector<int>& number) const {
  std::string out;
  for (const Piece& p : pieces_) {
    out += p.text;
    if (p.constant < 0) continue;
    const size_t k = static_cast<size_t>(p.constant);
    if (number[k] != 0) {
      out += StrCat("$", number[k]);
    } else {
      out.append(constants[k]);
    }
  }
  return out;
}

namespace {

// Marks the placeholders under `msg` that may stay parameters; `fixed`:
// the subtree is a place where only a constant means the same.
void MarkParameterPositions(const ProtoMessage* msg, bool fixed, int first,
                            std::vector<bool>& ok) {
  if (Is(msg, pg_query__param_ref__descriptor)) {
    int n = reinterpret_cast<const PgQuery__ParamRef*>(msg)->number - first;
    if (!fixed && n >= 0 && static_cast<size_t>(n) < ok.size()) ok[static_cast<size_t>(n)] = true;
    return;
  }
  const bool type_name = Is(msg, pg_query__type_name__descriptor);
  const bool select = Is(msg, pg_query__select_stmt__descriptor);
  const bool sort_by = Is(msg, pg_query__sort_by__descriptor);
  ForEachChild(msg, [&](std::string_view field, const ProtoMessage* child) {
    bool child_fixed = fixed || type_name || (sort_by && field == "node") ||
                       (select && (field == "group_clause" || field == "distinct_clause"));
    MarkParameterPositions(child, child_fixed, first, ok);
  });
}

}  // namespace

std::vector<bool> ParameterPositions(const ParseTree& tree, int first, size_t count) {
  std::vector<bool> ok(count, false);
  MarkParameterPositions(&tree.get()->base, false, first, ok);
  return ok;
}

int32_t NumericConstantType(std::string_view constant) {
  constexpr int32_t kInt4 = 23, kInt8 = 20, kNumeric = 1700;
  if (constant.empty() || !(absl::ascii_isdigit(static_cast<unsigned char>(constant[0])) ||
                            constant[0] == '.')) {
    return 0;
  }
  // -2147483648 is an int4 and -9223372036854775808 an int8 as written,
  // but their positive halves are one type wider.
  if (constant == "2147483648" || constant == "9223372036854775808") return 0;
  int32_t i4 = 0;
  if (ParseInt(constant, i4)) return kInt4;
  int64_t i8 = 0;
  if (ParseInt(constant, i8)) return kInt8;
  return kNumeric;
}

}  // namespace pgshift::routing
