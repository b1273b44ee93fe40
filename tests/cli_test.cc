// smtpd::cli::parse: the reference's command line (getopt "nVhc:s:du" plus
// long options, unique prefixes allowed, options end at the first operand)
// and the options this version adds.
#include <initializer_list>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli.h"

namespace {

using smtpd::cli::Result;

Result parse(std::initializer_list<const char*> args) {
  std::vector<std::string> argv = {"smtpd"};
  for (const char* a : args) argv.push_back(a);
  return smtpd::cli::parse(argv);
}

// The error text ends with the usage and then `msg` on its own line.
void expect_usage_error(const Result& r, const std::string& msg) {
  EXPECT_FALSE(r.run);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("Usage:"), std::string::npos) << r.err;
  const std::string tail = "\n" + msg + "\n";
  ASSERT_GE(r.err.size(), tail.size()) << r.err;
  EXPECT_EQ(r.err.substr(r.err.size() - tail.size()), tail) << r.err;
}

TEST(Cli, DefaultsAreTheReferences) {
  Result r = parse({});
  ASSERT_TRUE(r.run);
  EXPECT_EQ(r.options.local.host, "localhost");
  EXPECT_EQ(r.options.local.port, 8025);
  EXPECT_EQ(r.options.remote.host, "localhost");
  EXPECT_EQ(r.options.remote.port, 25);
  EXPECT_EQ(r.options.classname, "PureProxy");
  EXPECT_EQ(r.options.server.data_size_limit, 33554432u);
  EXPECT_TRUE(r.options.setuid);
  EXPECT_FALSE(r.options.debug);
  EXPECT_FALSE(r.options.server.enable_SMTPUTF8);
  EXPECT_EQ(r.options.workers, 1);
}

TEST(Cli, ShortOptions) {
  Result r = parse({"-n", "-d", "-u", "-c", "DebuggingServer", "-s", "1000"});
  ASSERT_TRUE(r.run);
  EXPECT_FALSE(r.options.setuid);
  EXPECT_TRUE(r.options.debug);
  EXPECT_TRUE(r.options.server.enable_SMTPUTF8);
  EXPECT_EQ(r.options.classname, "DebuggingServer");
  EXPECT_EQ(r.options.server.data_size_limit, 1000u);
}

TEST(Cli, ShortOptionsClusteredAndWithAttachedValues) {
  Result r = parse({"-nd", "-s100", "-cSMTPServer"});
  ASSERT_TRUE(r.run);
  EXPECT_FALSE(r.options.setuid);
  EXPECT_TRUE(r.options.debug);
  EXPECT_EQ(r.options.server.data_size_limit, 100u);
  EXPECT_EQ(r.options.classname, "SMTPServer");
  Result r2 = parse({"-nuc", "DebuggingServer"});
  ASSERT_TRUE(r2.run);
  EXPECT_TRUE(r2.options.server.enable_SMTPUTF8);
  EXPECT_EQ(r2.options.classname, "DebuggingServer");
}

TEST(Cli, LongOptions) {
  Result r = parse({"--nosetuid", "--debug", "--smtputf8", "--class",
                    "DebuggingServer", "--size", "2000"});
  ASSERT_TRUE(r.run);
  EXPECT_FALSE(r.options.setuid);
  EXPECT_TRUE(r.options.debug);
  EXPECT_TRUE(r.options.server.enable_SMTPUTF8);
  EXPECT_EQ(r.options.classname, "DebuggingServer");
  EXPECT_EQ(r.options.server.data_size_limit, 2000u);
}

TEST(Cli, LongOptionValueAfterEqualsSign) {
  Result r = parse({"--class=DebuggingServer", "--size=1000"});
  ASSERT_TRUE(r.run);
  EXPECT_EQ(r.options.classname, "DebuggingServer");
  EXPECT_EQ(r.options.server.data_size_limit, 1000u);
}

TEST(Cli, LongOptionsByUniquePrefix) {
  Result r = parse({"--nos", "--cl", "X", "--si=5", "--sm"});
  ASSERT_TRUE(r.run);
  EXPECT_FALSE(r.options.setuid);
  EXPECT_EQ(r.options.classname, "X");
  EXPECT_EQ(r.options.server.data_size_limit, 5u);
  EXPECT_TRUE(r.options.server.enable_SMTPUTF8);
}

TEST(Cli, ReferencePrefixesStillWorkNextToAddedOptions) {
  // In the reference "--d" is --debug; the added --data-timeout must not
  // make it ambiguous.
  Result r = parse({"--d", "--c", "DebuggingServer"});
  ASSERT_TRUE(r.run) << r.err;
  EXPECT_TRUE(r.options.debug);
  EXPECT_EQ(r.options.classname, "DebuggingServer");
}

TEST(Cli, AmbiguousPrefixIsAnError) {
  expect_usage_error(parse({"--s", "1"}), "option --s not a unique prefix");
}

TEST(Cli, UnknownOptionsAreErrors) {
  expect_usage_error(parse({"-x"}), "option -x not recognized");
  expect_usage_error(parse({"--xyz"}), "option --xyz not recognized");
}

TEST(Cli, MissingOptionArgumentIsAnError) {
  expect_usage_error(parse({"-c"}), "option -c requires argument");
  expect_usage_error(parse({"--class"}), "option --class requires argument");
}

TEST(Cli, ArgumentToAFlagIsAnError) {
  expect_usage_error(parse({"--nosetuid=1"}),
                     "option --nosetuid must not have an argument");
}

TEST(Cli, HelpGoesToStderrAndExitsZero) {
  for (const char* opt : {"-h", "--help", "--he"}) {
    Result r = parse({opt});
    EXPECT_FALSE(r.run) << opt;
    EXPECT_EQ(r.exit_code, 0) << opt;
    EXPECT_EQ(r.out, "") << opt;
    EXPECT_NE(r.err.find("Usage: smtpd [options] [localhost:localport "
                         "[remotehost:remoteport]]"),
              std::string::npos) << opt;
    EXPECT_NE(r.err.find("--smtputf8"), std::string::npos);
    EXPECT_NE(r.err.find("--size limit"), std::string::npos);
  }
}

TEST(Cli, HelpWinsOverLaterBadOptionValues) {
  // Options are acted on in order, as the reference does.
  Result r = parse({"-h", "-s", "abc"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
}

TEST(Cli, VersionIsOneLineOnStdout) {
  for (const char* opt : {"-V", "--version"}) {
    Result r = parse({opt});
    EXPECT_FALSE(r.run);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(r.out, std::string(smtpd::__version__) + "\n");
  }
}

TEST(Cli, InvalidSizeIsExitOneWithoutUsage) {
  Result r = parse({"-n", "-s", "abc", "127.0.0.1:1"});
  EXPECT_FALSE(r.run);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "Invalid size: abc\n");
}

TEST(Cli, NegativeOrEmptySizeIsRefused) {
  EXPECT_EQ(parse({"-s", "-5"}).err, "Invalid size: -5\n");
  EXPECT_EQ(parse({"--size="}).err, "Invalid size: \n");
  EXPECT_EQ(parse({"-s", "0x10"}).exit_code, 1);
}

TEST(Cli, SizeZeroMeansNoLimit) {
  Result r = parse({"-s", "0"});
  ASSERT_TRUE(r.run);
  EXPECT_EQ(r.options.server.data_size_limit, 0u);
}

TEST(Cli, SizeAcceptsWhatPythonIntAccepts) {
  EXPECT_EQ(parse({"-s", " 100 "}).options.server.data_size_limit, 100u);
  EXPECT_EQ(parse({"-s", "+100"}).options.server.data_size_limit, 100u);
  Result r = parse({"-s", "1_000"});
  ASSERT_TRUE(r.run) << r.err;
  EXPECT_EQ(r.options.server.data_size_limit, 1000u);
}

TEST(Cli, LocalAndRemoteSpecs) {
  Result r = parse({"127.0.0.1:2525", "mail.example:587"});
  ASSERT_TRUE(r.run);
  EXPECT_EQ(r.options.local.host, "127.0.0.1");
  EXPECT_EQ(r.options.local.port, 2525);
  EXPECT_EQ(r.options.remote.host, "mail.example");
  EXPECT_EQ(r.options.remote.port, 587);
}

TEST(Cli, EmptyHostMeansEveryInterface) {
  Result r = parse({":2525"});
  ASSERT_TRUE(r.run);
  EXPECT_EQ(r.options.local.host, "");
  EXPECT_EQ(r.options.local.port, 2525);
  EXPECT_EQ(r.options.remote.port, 25);
}

TEST(Cli, BracketedIpv6Specs) {
  Result r = parse({"[::1]:8025", "[2001:db8::1]:25"});
  ASSERT_TRUE(r.run);
  EXPECT_EQ(r.options.local.host, "::1");
  EXPECT_EQ(r.options.local.port, 8025);
  EXPECT_EQ(r.options.remote.host, "2001:db8::1");
  EXPECT_EQ(r.options.remote.port, 25);
}

TEST(Cli, SpecWithoutColonIsBadSpec) {
  expect_usage_error(parse({"-n", "-c", "DebuggingServer", "foo"}),
                     "Bad local spec: foo");
  expect_usage_error(parse({"127.0.0.1:1", "bar"}), "Bad remote spec: bar");
}

TEST(Cli, NonNumericOrOutOfRangePortIsBadPort) {
  expect_usage_error(parse({"localhost:abc"}), "Bad local port: localhost:abc");
  expect_usage_error(parse({"localhost:"}), "Bad local port: localhost:");
  expect_usage_error(parse({"localhost:65536"}), "Bad local port: localhost:65536");
  expect_usage_error(parse({"localhost:1", "host:-1"}), "Bad remote port: host:-1");
}

TEST(Cli, OptionsStopAtTheFirstAddress) {
  expect_usage_error(parse({"-c", "DebuggingServer", "127.0.0.1:1", "-n"}),
                     "Bad remote spec: -n");
}

TEST(Cli, DoubleDashEndsOptions) {
  expect_usage_error(parse({"--", "-n"}), "Bad local spec: -n");
}

TEST(Cli, MoreThanTwoAddressesIsAnError) {
  expect_usage_error(parse({"a:1", "b:2", "c:3"}), "Invalid arguments: a:1, b:2, c:3");
}

TEST(Cli, AddedTimeoutAndLimitOptions) {
  Result r = parse({"--timeout", "5", "--data-timeout=7.5", "--max-connections",
                    "10", "--max-recipients=3", "-j", "4"});
  ASSERT_TRUE(r.run) << r.err;
  EXPECT_DOUBLE_EQ(r.options.server.timeout, 5);
  EXPECT_DOUBLE_EQ(r.options.server.data_timeout, 7.5);
  EXPECT_EQ(r.options.server.max_connections, 10u);
  EXPECT_EQ(r.options.server.max_recipients, 3u);
  EXPECT_EQ(r.options.workers, 4);
}

TEST(Cli, BadValuesForAddedOptionsAreRefused) {
  EXPECT_EQ(parse({"--timeout", "abc"}).err, "Invalid timeout: abc\n");
  EXPECT_EQ(parse({"--timeout", "-1"}).exit_code, 1);
  EXPECT_EQ(parse({"--max-recipients", "x"}).err, "Invalid max-recipients: x\n");
  EXPECT_EQ(parse({"-j", "0"}).err, "Invalid number of workers: 0\n");
}

TEST(Cli, ProgramNameAppearsInUsage) {
  Result r = smtpd::cli::parse({"/usr/sbin/smtpd", "-h"});
  EXPECT_NE(r.err.find("Usage: /usr/sbin/smtpd [options]"), std::string::npos);
}

}  // namespace
