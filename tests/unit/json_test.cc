// JSON strings as pgshift writes them (reports, records, JSON logs): any
// bytes in, valid JSON out.
#include "common/json.h"

#include <gtest/gtest.h>

namespace pgshift {
namespace {

TEST(JsonString, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonString("a\"b\\c\nd\te\x01"), "\"a\\\"b\\\\c\\nd\\te\\u0001\"");
}

TEST(JsonString, KeepsUtf8AndReplacesWhatIsNot) {
  EXPECT_EQ(JsonString("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x98"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x98\"");
  // A lone continuation byte, a truncated sequence, an overlong '/', a
  // UTF-16 surrogate, a byte that never starts UTF-8.
  EXPECT_EQ(JsonString("a\x80z"), "\"a\\ufffdz\"");
  EXPECT_EQ(JsonString("a\xe2\x82"), "\"a\\ufffd\\ufffd\"");
  EXPECT_EQ(JsonString("\xc0\xaf"), "\"\\ufffd\\ufffd\"");
  EXPECT_EQ(JsonString("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
  EXPECT_EQ(JsonString("\xff"), "\"\\ufffd\"");
}

}  // namespace
}  // namespace pgshift
