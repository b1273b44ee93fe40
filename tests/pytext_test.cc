// Python text rules (src/pytext.h). Expected values were printed by
// CPython 3.11 (repr(), str.strip(), str.split(), str.upper(),
// str.isalnum(), bytes.decode('utf-8')) and are recorded here.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "pytext.h"

namespace {

namespace pt = smtpd::pytext;
using Strings = std::vector<std::string>;

// ------------------------------------------------------------------ bytes repr

TEST(BytesRepr, PlainTextInSingleQuotes) {
  EXPECT_EQ(pt::bytes_repr(""), "b''");
  EXPECT_EQ(pt::bytes_repr("abc"), "b'abc'");
}

TEST(BytesRepr, DoubleQuotesOnlyWhenThereIsASingleQuoteAndNoDouble) {
  EXPECT_EQ(pt::bytes_repr("it's"), "b\"it's\"");
  EXPECT_EQ(pt::bytes_repr("'"), "b\"'\"");
  EXPECT_EQ(pt::bytes_repr("say \"hi\""), "b'say \"hi\"'");
  EXPECT_EQ(pt::bytes_repr("\""), "b'\"'");
}

TEST(BytesRepr, SingleQuoteEscapedWhenBothKindsAppear) {
  EXPECT_EQ(pt::bytes_repr("both ' and \""), "b'both \\' and \"'");
  EXPECT_EQ(pt::bytes_repr("'\"'"), "b'\\'\"\\''");
}

TEST(BytesRepr, BackslashIsDoubled) {
  EXPECT_EQ(pt::bytes_repr("back\\slash"), "b'back\\\\slash'");
}

TEST(BytesRepr, TabLfCrHaveLetterEscapes) {
  EXPECT_EQ(pt::bytes_repr("\t\n\r"), "b'\\t\\n\\r'");
}

TEST(BytesRepr, OtherControlsAndDelAreHex) {
  EXPECT_EQ(pt::bytes_repr(std::string("\x00\x01\x1f\x7f", 4)),
            "b'\\x00\\x01\\x1f\\x7f'");
  EXPECT_EQ(pt::bytes_repr("\x0b\x0c"), "b'\\x0b\\x0c'");
}

TEST(BytesRepr, HighBytesAreLowercaseHex) {
  EXPECT_EQ(pt::bytes_repr("\x80\xff\xc3\xa9"), "b'\\x80\\xff\\xc3\\xa9'");
}

// ------------------------------------------------------------------ str and list repr

TEST(StrRepr, QuoteChoiceAsForBytes) {
  EXPECT_EQ(pt::str_repr("a"), "'a'");
  EXPECT_EQ(pt::str_repr("it's"), "\"it's\"");
  EXPECT_EQ(pt::str_repr("' \""), "'\\' \"'");
}

TEST(StrRepr, PrintableNonAsciiStaysAsIs) {
  EXPECT_EQ(pt::str_repr("na\xc3\xafve"), "'na\xc3\xafve'");
  EXPECT_EQ(pt::str_repr("\xc2\xa1"), "'\xc2\xa1'");              // U+00A1
  EXPECT_EQ(pt::str_repr("\xf0\x9f\x98\x80"), "'\xf0\x9f\x98\x80'");  // U+1F600
}

TEST(StrRepr, LatinOneControlsNbspAndSoftHyphenAreHex) {
  EXPECT_EQ(pt::str_repr("\xc2\x85\xc2\xa0\xc2\xad"), "'\\x85\\xa0\\xad'");
}

TEST(StrRepr, NonPrintableBeyondLatinOneUseBackslashU) {
  // U+2028 (line separator), U+200B (format), U+3000 (ideographic space).
  EXPECT_EQ(pt::str_repr("\xe2\x80\xa8"), "'\\u2028'");
  EXPECT_EQ(pt::str_repr("\xe2\x80\x8b"), "'\\u200b'");
  EXPECT_EQ(pt::str_repr("\xe3\x80\x80"), "'\\u3000'");
}

TEST(StrRepr, UndecodableByteShowsAsSurrogateEscape) {
  EXPECT_EQ(pt::str_repr("a\xff"), "'a\\udcff'");
}

TEST(ListRepr, ItemsAsStrReprJoinedByCommaSpace) {
  EXPECT_EQ(pt::list_repr({}), "[]");
  EXPECT_EQ(pt::list_repr({"A"}), "['A']");
  EXPECT_EQ(pt::list_repr({"A", "it's", "B=1"}), "['A', \"it's\", 'B=1']");
}

// ------------------------------------------------------------------ UTF-8

TEST(Utf8Valid, AcceptsWellFormedText) {
  EXPECT_TRUE(pt::utf8_valid(""));
  EXPECT_TRUE(pt::utf8_valid(std::string("a\0b", 3)));
  EXPECT_TRUE(pt::utf8_valid("\xc3\xa9"));
  EXPECT_TRUE(pt::utf8_valid("\xed\x9f\xbf"));      // U+D7FF
  EXPECT_TRUE(pt::utf8_valid("\xee\x80\x80"));      // U+E000
  EXPECT_TRUE(pt::utf8_valid("\xef\xbf\xbf"));      // U+FFFF
  EXPECT_TRUE(pt::utf8_valid("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  EXPECT_TRUE(pt::utf8_valid("x\xf0\x9f\x98\x80y"));
}

TEST(Utf8Valid, RejectsOverlongForms) {
  EXPECT_FALSE(pt::utf8_valid("\xc0\x80"));
  EXPECT_FALSE(pt::utf8_valid("\xc1\xbf"));
  EXPECT_FALSE(pt::utf8_valid("\xe0\x80\x80"));
  EXPECT_FALSE(pt::utf8_valid("\xe0\x9f\xbf"));
  EXPECT_FALSE(pt::utf8_valid("\xf0\x80\x80\x80"));
  EXPECT_FALSE(pt::utf8_valid("\xf0\x8f\xbf\xbf"));
}

TEST(Utf8Valid, RejectsSurrogates) {
  EXPECT_FALSE(pt::utf8_valid("\xed\xa0\x80"));  // U+D800
  EXPECT_FALSE(pt::utf8_valid("\xed\xbf\xbf"));  // U+DFFF
}

TEST(Utf8Valid, RejectsAboveU10FFFF) {
  EXPECT_FALSE(pt::utf8_valid("\xf4\x90\x80\x80"));
  EXPECT_FALSE(pt::utf8_valid("\xf5\x80\x80\x80"));
}

TEST(Utf8Valid, RejectsTruncatedSequences) {
  EXPECT_FALSE(pt::utf8_valid("\xc3"));
  EXPECT_FALSE(pt::utf8_valid("a\xe2\x82"));
  EXPECT_FALSE(pt::utf8_valid("\xf0\x9f\x98"));
  EXPECT_FALSE(pt::utf8_valid("\xe2\x82z"));
}

TEST(Utf8Valid, RejectsStrayBytes) {
  EXPECT_FALSE(pt::utf8_valid("\x80"));
  EXPECT_FALSE(pt::utf8_valid("a\xbf"));
  EXPECT_FALSE(pt::utf8_valid("\xfe"));
  EXPECT_FALSE(pt::utf8_valid("\xff\xfe"));
}

// ------------------------------------------------------------------ whitespace

TEST(Strip, RemovesPythonWhitespaceAtBothEnds) {
  EXPECT_EQ(pt::strip(" \t\n\r\x0b\x0c x y \t"), "x y");
  // U+001C..U+001F, U+0085, U+00A0, U+3000 and U+2028 are white space too.
  EXPECT_EQ(pt::strip("\x1c\x1d\x1e\x1f\xc2\x85\xc2\xa0\xe3\x80\x80x y\xe2\x80\xa8"),
            "x y");
}

TEST(Strip, KeepsNonSpaceMultiByteCharacters) {
  EXPECT_EQ(pt::strip(" \xc3\xa9x\xc3\xa9 "), "\xc3\xa9x\xc3\xa9");
  EXPECT_EQ(pt::strip("x\xe2\x80\x8b"), "x\xe2\x80\x8b");  // U+200B is not space
}

TEST(Strip, AllSpaceGivesEmpty) {
  EXPECT_EQ(pt::strip(""), "");
  EXPECT_EQ(pt::strip(" \t "), "");
}

TEST(Split, SplitsOnRunsOfPythonWhitespace) {
  EXPECT_EQ(pt::split(" a\x1c" "b\xc2\xa0" "c\xe2\x80\x83" "d  e\x0b\x0c" "f"),
            (Strings{"a", "b", "c", "d", "e", "f"}));
  EXPECT_EQ(pt::split("SIZE=10 BODY=8BITMIME"),
            (Strings{"SIZE=10", "BODY=8BITMIME"}));
}

TEST(Split, EmptyOrAllSpaceGivesNoWords) {
  EXPECT_TRUE(pt::split("").empty());
  EXPECT_TRUE(pt::split(" \t\r\n").empty());
}

// ------------------------------------------------------------------ upper, isalnum

TEST(Upper, AsciiLettersOnly) {
  EXPECT_EQ(pt::upper("helo example.com 1-2_x"), "HELO EXAMPLE.COM 1-2_X");
}

TEST(Upper, LatinOneLetters) {
  EXPECT_EQ(pt::upper("\xc3\xa9\xc3\xa0\xc3\xa4"), "\xc3\x89\xc3\x80\xc3\x84");
  EXPECT_EQ(pt::upper("\xc3\x9f"), "SS");            // sharp s
  EXPECT_EQ(pt::upper("\xc3\xb7"), "\xc3\xb7");      // division sign
}

TEST(Upper, LatinOneLettersWhoseCapitalIsOutsideLatinOne) {
  EXPECT_EQ(pt::upper("\xc3\xbf"), "\xc5\xb8");  // y diaeresis -> U+0178
  EXPECT_EQ(pt::upper("\xc2\xb5"), "\xce\x9c");  // micro sign -> U+039C
}

TEST(Upper, KeepsInvalidBytes) {
  EXPECT_EQ(pt::upper("a\xff" "b"), "A\xff" "B");
}

TEST(IsAlnum, AsciiLettersAndDigits) {
  EXPECT_TRUE(pt::isalnum("abc123"));
  EXPECT_TRUE(pt::isalnum("SIZE"));
  EXPECT_FALSE(pt::isalnum(""));
  EXPECT_FALSE(pt::isalnum("a-b"));
  EXPECT_FALSE(pt::isalnum("a b"));
  EXPECT_FALSE(pt::isalnum("_"));
}

TEST(IsAlnum, NonAsciiLettersCount) {
  EXPECT_TRUE(pt::isalnum("na\xc3\xafve"));
  EXPECT_FALSE(pt::isalnum("\xc2\xa0"));  // NBSP
}

TEST(IsAlnum, LatinOneLettersBelowU00C0Count) {
  EXPECT_TRUE(pt::isalnum("\xc2\xaa"));  // feminine ordinal
  EXPECT_TRUE(pt::isalnum("\xc2\xb5"));  // micro sign
  EXPECT_TRUE(pt::isalnum("\xc2\xba"));  // masculine ordinal
}

TEST(IsAlnum, LatinOneSignsAreNot) {
  EXPECT_FALSE(pt::isalnum("\xc3\x97"));  // multiplication sign
  EXPECT_FALSE(pt::isalnum("\xc3\xb7"));  // division sign
  EXPECT_FALSE(pt::isalnum("a\xc2\xa7"));  // section sign
}

TEST(IsDigits, AsciiDigitsOnly) {
  EXPECT_TRUE(pt::isdigits("0"));
  EXPECT_TRUE(pt::isdigits("0123456789"));
  EXPECT_FALSE(pt::isdigits(""));
  EXPECT_FALSE(pt::isdigits("1a"));
  EXPECT_FALSE(pt::isdigits("-1"));
  EXPECT_FALSE(pt::isdigits(" 1"));
}

}  // namespace
