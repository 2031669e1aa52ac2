#include "common/user_dirs.h"

#include <cstdlib>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "common/error.h"

namespace clawbot::user_dirs {
namespace {

namespace fs = std::filesystem;

// Sets HOME and the XDG variables for one test and puts them back after.
class UserDirsTest : public ::testing::Test {
 protected:
  static constexpr const char* names[] = {"HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
                                          "XDG_STATE_HOME"};
  void SetUp() override {
    for (const char* name : names) {
      const char* value = std::getenv(name);
      saved_.push_back(value ? std::optional<std::string>(value) : std::nullopt);
      ::unsetenv(name);
    }
  }
  void TearDown() override {
    for (std::size_t i = 0; i < saved_.size(); ++i) {
      if (saved_[i])
        ::setenv(names[i], saved_[i]->c_str(), 1);
      else
        ::unsetenv(names[i]);
    }
  }
  std::vector<std::optional<std::string>> saved_;
};

TEST_F(UserDirsTest, AnAbsoluteXdgVariableWins) {
  ::setenv("HOME", "/home/ann", 1);
  ::setenv("XDG_CONFIG_HOME", "/etc/ann", 1);
  ::setenv("XDG_DATA_HOME", "/srv/data", 1);
  ::setenv("XDG_CACHE_HOME", "/var/cache/ann", 1);
  ::setenv("XDG_STATE_HOME", "/var/state/ann", 1);
  EXPECT_EQ(find(Kind::config), fs::path("/etc/ann"));
  EXPECT_EQ(find(Kind::data), fs::path("/srv/data"));
  EXPECT_EQ(find(Kind::cache), fs::path("/var/cache/ann"));
  EXPECT_EQ(find(Kind::state), fs::path("/var/state/ann"));
}

TEST_F(UserDirsTest, ElseTheHomeDirectoriesOfTheSpec) {
  ::setenv("HOME", "/home/ann", 1);
  ::setenv("XDG_DATA_HOME", "relative/is/invalid", 1);  // the spec: ignored
  ::setenv("XDG_CACHE_HOME", "", 1);
  EXPECT_EQ(find(Kind::config), fs::path("/home/ann/.config"));
  EXPECT_EQ(find(Kind::data), fs::path("/home/ann/.local/share"));
  EXPECT_EQ(find(Kind::cache), fs::path("/home/ann/.cache"));
  EXPECT_EQ(find(Kind::state), fs::path("/home/ann/.local/state"));
  EXPECT_EQ(home(), fs::path("/home/ann"));
}

TEST_F(UserDirsTest, NeitherSetIsNoneOrAClearError) {
  ::setenv("HOME", "", 1);
  EXPECT_EQ(find(Kind::cache), std::nullopt);
  EXPECT_EQ(home(), std::nullopt);
  EXPECT_EQ(missing(Kind::data), "neither XDG_DATA_HOME nor HOME is set");
  try {
    require(Kind::cache, "name the file with -o");
    FAIL() << "no error";
  } catch (const ClawbotError& e) {
    EXPECT_STREQ(e.what(), "neither XDG_CACHE_HOME nor HOME is set; name the file with -o");
  }
  ::setenv("XDG_CACHE_HOME", "/c", 1);
  EXPECT_EQ(require(Kind::cache), fs::path("/c"));
}

}  // namespace
}  // namespace clawbot::user_dirs
