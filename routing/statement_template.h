// Statements that differ only in their constants, as a simple-protocol
// client sends them (`... WHERE aid = 57417`), share one routing plan: the
// statement is planned once with its constants taken out as parameters,
// and for each execution the constants are put back into the plan's texts.
// Constants are found by PostgreSQL's own scanner (libpg_query), never by
// pattern matching.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgshift::routing {

struct StatementTemplate {
  // The statement with each constant replaced by $first, $first + 1, ...
  // (numbered after the statement's own parameters).
  std::string text;
  std::vector<std::string_view> constants;  // views into the statement, in order
  int first = 1;
};

// nullopt when the statement has no constants, or cannot be scanned. A
// string constant that follows a name (a typed literal: `interval '1 day'`)
// stays in the text, since a parameter cannot take its place there.
std::optional<StatementTemplate> MakeTemplate(std::string_view sql);

class ParseTree;

// Which of a template's placeholders ($first .. $first + count - 1 in
// `tree`, the template parsed) a parameter may also stand for when the
// statement is run, rather than its constant: not a position in ORDER BY,
// GROUP BY or DISTINCT ON (an integer there names an output column), nor a
// type's modifier (`varchar(10)`).
std::vector<bool> ParameterPositions(const ParseTree& tree, int first, size_t count);

// The type PostgreSQL gives a numeric constant as written (int4, int8 or
// numeric), so that a parameter of that type means the same; 0 for a
// string, or for the two integers whose type changes when negated.
int32_t NumericConstantType(std::string_view constant);

// A statement run with some of its constants sent as parameters $1, $2, ...
// of the given types (see Plan::parameterized).
struct ParameterizedText {
  std::string sql;
  std::vector<int32_t> types;  // OIDs
  std::vector<std::string> values;
};

// A text with placeholders $first .. $first + count - 1, split where they
// are, so that filling them in is a concatenation.
class TemplateText {
 public:
  TemplateText() = default;
  // False when `text` cannot be scanned.
  bool Split(std::string_view text, int first, size_t count);
  std::string Fill(const std::vector<std::string_view>& constants) const;
  // The text with constant k as parameter number[k] when that is not 0,
  // else as written.
  std::string FillParameters(const std::vector<std::string_view>& constants,
                             const std::vector<int>& number) const;

 private:
  struct Piece {
    std::string text;
    int constant = -1;  // the constant that follows the text, if any
  };
  std::vector<Piece> pieces_;
};

}  // namespace pgshift::routing
