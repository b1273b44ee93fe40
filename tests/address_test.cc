// parse_path (src/address.h) against the reference's _getaddr(): the
// expected address and rest were printed by CPython 3.11's
// email._header_value_parser get_angle_addr()/get_addr_spec() (angle form
// when the argument starts with '<' after white space); where the
// reference raises, we expect error = true.
#include <string>

#include <gtest/gtest.h>

#include "address.h"

namespace {

using smtpd::parse_path;

// Checks a case the reference parses: its addr_spec and what follows.
void expect_path(const std::string& arg, const std::string& address,
                 const std::string& rest) {
  smtpd::ParsedPath p = parse_path(arg);
  EXPECT_FALSE(p.error) << arg;
  EXPECT_EQ(p.address, address) << arg;
  EXPECT_EQ(p.rest, rest) << arg;
}

void expect_error(const std::string& arg) {
  EXPECT_TRUE(parse_path(arg).error) << arg;
}

TEST(ParsePath, EmptyArgumentIsNoAddressAndNoError) {
  smtpd::ParsedPath p = parse_path("");
  EXPECT_FALSE(p.error);
  EXPECT_EQ(p.address, "");
  EXPECT_EQ(p.rest, "");
}

TEST(ParsePath, AngleAndBareAddresses) {
  expect_path("<eggs@example>", "eggs@example", "");
  expect_path("eggs@example", "eggs@example", "");
  expect_path(" <eggs@example>", "eggs@example", "");
  expect_path("\t<a@b>", "a@b", "");
  expect_path("<first.last@sub.example.org>", "first.last@sub.example.org", "");
}

TEST(ParsePath, LocalPartAloneIsAnAddress) {
  expect_path("eggs", "eggs", "");
  expect_path("<eggs>", "eggs", "");
}

TEST(ParsePath, RestIsWhatFollowsAfterWhiteSpace) {
  expect_path("<eggs@example> SIZE=1000 BODY=8BITMIME", "eggs@example",
              "SIZE=1000 BODY=8BITMIME");
  expect_path("eggs@example SIZE=1000", "eggs@example", "SIZE=1000");
  expect_path("<a@b>SIZE=1", "a@b", "SIZE=1");
  expect_path("<a@b>  SIZE=1  ", "a@b", "SIZE=1  ");
  expect_path("x@y z", "x@y", "z");
}

TEST(ParsePath, TrailingGarbageIsLeftInRest) {
  expect_path("<spam@example>x", "spam@example", "x");
  expect_path("<spam@example> <ham@example>", "spam@example", "<ham@example>");
  expect_path("Spam <spam@example>", "Spam", "<spam@example>");
  expect_path("<user@example>>", "user@example", ">");
  expect_path("<user@ex ample>", "user@ex", "ample>");
  expect_path("<a@b c@d>", "a@b", "c@d>");
  expect_path("<a@[x]y>", "a@[x]", "y>");
}

TEST(ParsePath, NullPath) {
  expect_path("<>", "<>", "");
  expect_path("<>x", "<>", "x");
}

TEST(ParsePath, NullPathKeepsWhatFollowsVerbatim) {
  // The reference returns right after "<>", white space and comments
  // included; "MAIL FROM:<> (c)" is then a 501, not a 250.
  expect_path("<> SIZE=10", "<>", " SIZE=10");
  expect_path("<> (c)", "<>", " (c)");
  expect_path("<>(c) SIZE=1", "<>", "(c) SIZE=1");
}

TEST(ParsePath, NullPathAllowsNothingBetweenTheBrackets) {
  expect_error("< >");
  expect_error("<\t>");
}

TEST(ParsePath, QuotedLocalPartKeepsQuotesOnlyWhenNeeded) {
  expect_path("<\"Fred Blogs\"@example.com>", "\"Fred Blogs\"@example.com", "");
  expect_path("\"Fred Blogs\"@example.com", "\"Fred Blogs\"@example.com", "");
  expect_path("\"Fred Blogs\"@example.com SIZE=1000", "\"Fred Blogs\"@example.com",
              "SIZE=1000");
  expect_path("<\"fred\"@example.com>", "fred@example.com", "");
  expect_path("\"a\".\"b\"@c", "a.b@c", "");
  expect_path("<\"a@b\"@c>", "\"a@b\"@c", "");
}

TEST(ParsePath, QuotedPairsAreReEscaped) {
  expect_path("<\"a\\\"b\"@example.com>", "\"a\\\"b\"@example.com", "");
  expect_path("<\"a\\\\b\"@x>", "\"a\\\\b\"@x", "");
}

TEST(ParsePath, BackslashInAnUnquotedLocalPart) {
  expect_path("<a\\b@c>", "\"a\\\\b\"@c", "");
}

TEST(ParsePath, EmptyQuotedLocalPartInAngles) {
  expect_path("<\"\"@c>", "\"\"@c", "");
}

TEST(ParsePath, WordsSeparatedBySpaceAreQuoted) {
  expect_path("<a b@example>", "\"a b\"@example", "");
  expect_path("a.\"b c\"@d", "\"a.b c\"@d", "");
  expect_path("a\"b@example", "\"ab@example\"", "");
}

TEST(ParsePath, CommentsAndSpacesInsideAreDropped) {
  expect_path("<user(comment)@example>", "user@example", "");
  expect_path("<(c)a@b>", "a@b", "");
  expect_path("<user @ example>", "user@example", "");
  expect_path("< a@b>", "a@b", "");
  expect_path("<a@b\t>", "a@b", "");
  expect_path("<a@[1.2.3.4] >", "a@[1.2.3.4]", "");
  expect_path("<user@example> (comment) SIZE=1", "user@example", "SIZE=1");
  expect_path("<a@b>(c)", "a@b", "");
  expect_path("a@b (c)", "a@b", "");
  expect_path("a@b(c) X=1", "a@b", "X=1");
}

TEST(ParsePath, CommentBeforeABareAddressIsSkipped) {
  expect_path("(c) a@b", "a@b", "");
  expect_path("(c)a@b", "a@b", "");
}

TEST(ParsePath, CommentBeforeAnAngleAddressIsAnError) {
  // The reference only takes the angle form when '<' comes first.
  expect_error("(c) <user@example>");
  expect_error("(c)<a@b>");
  expect_error(" (c) <a@b>");
}

TEST(ParsePath, UnterminatedAngleIsAccepted) {
  expect_path("<user@example", "user@example", "");
}

TEST(ParsePath, SourceRouteIsDropped) {
  expect_path("<@a,@b:user@example>", "user@example", "");
  expect_path("<@a:user@example>", "user@example", "");
}

TEST(ParsePath, DomainLiterals) {
  expect_path("<user@[127.0.0.1]>", "user@[127.0.0.1]", "");
  expect_path("user@[IPv6:::1]", "user@[IPv6:::1]", "");
}

TEST(ParsePath, DotsInTheLocalPartAreKept) {
  expect_path("<a..b@example>", "a..b@example", "");
  expect_path("<.a@b>", ".a@b", "");
  expect_path("<a.@b>", "a.@b", "");
  expect_path("a.@b", "a.@b", "");
}

TEST(ParsePath, NonAsciiIsAtomText) {
  expect_path("na\xc3\xafve@example.com", "na\xc3\xafve@example.com", "");
  expect_path("<na\xc3\xafve@example.com>", "na\xc3\xafve@example.com", "");
  expect_path("<a@\xc3\xbc.de>", "a@\xc3\xbc.de", "");
}

TEST(ParsePath, MissingOrEmptyPartsAreErrors) {
  expect_error("<spam@>");
  expect_error("<@example>");
  expect_error("@example");
  expect_error("user@");
  expect_error("<@>");
}

TEST(ParsePath, BadDomainsAreErrors) {
  expect_error("<user@example.>");
  expect_error("<user@.example>");
  expect_error("a@b.");
  expect_error("<a@b.c.>");
  expect_error("<a@@b>");
  expect_error("<a@b@c>");
}

TEST(ParsePath, NestedAnglesAreAnError) {
  expect_error("<<user@example>>");
}

}  // namespace
