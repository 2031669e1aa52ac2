// The pages compiled into the binary (web/ through web/build.mjs): every asset found by its path, typed,
// with a strong ETag of its own; the dashboard's page loads only its own files and ships uPlot's licence; the
// chat (GET /) ships marked's, DOMPurify's and highlight.js's.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "web/assets.h"

namespace clawbot::web {
namespace {

TEST(WebAssets, DashboardPageAndFilesAreThere) {
  for (const char* path : {"/dashboard", "/dashboard/", "/dashboard/app.js", "/dashboard/app.css",
                           "/dashboard/favicon.svg", "/dashboard/licenses"}) {
    const Asset* asset = find_asset(path);
    ASSERT_NE(asset, nullptr) << path;
    EXPECT_EQ(asset->path, path);
    EXPECT_FALSE(asset->body.empty()) << path;
  }
  EXPECT_EQ(find_asset("/dashboard")->content_type, "text/html; charset=utf-8");
  EXPECT_EQ(find_asset("/dashboard/app.js")->content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(find_asset("/dashboard/app.css")->content_type, "text/css; charset=utf-8");
  EXPECT_EQ(find_asset("/dashboard/favicon.svg")->content_type, "image/svg+xml");
  EXPECT_EQ(find_asset("/dashboard/licenses")->content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(find_asset("/dashboard/")->body, find_asset("/dashboard")->body);
}

TEST(WebAssets, UnknownPathsAreNotAssets) {
  EXPECT_EQ(find_asset(""), nullptr);
  EXPECT_EQ(find_asset("/dashboard/app.js?x=1"), nullptr);  // callers pass the path without its query
  EXPECT_EQ(find_asset("/dashboard/../etc/passwd"), nullptr);
  EXPECT_EQ(find_asset("/DASHBOARD"), nullptr);
}

TEST(WebAssets, EachContentHasAStrongETagOfItsOwn) {
  std::set<std::string_view> etags;
  for (const Asset& asset : assets()) {
    ASSERT_GE(asset.etag.size(), 3u) << asset.path;
    EXPECT_EQ(asset.etag.front(), '"') << asset.path << ": strong, not W/";
    EXPECT_EQ(asset.etag.back(), '"') << asset.path;
    etags.insert(asset.etag);
  }
  // "/dashboard" and "/dashboard/" are one page, and the two pages share their icon: two tags fewer than
  // paths
  EXPECT_EQ(etags.size(), assets().size() - 2);
}

TEST(WebAssets, ThePageLoadsOnlyItsOwnFiles) {
  const std::string html(find_asset("/dashboard")->body);
  EXPECT_NE(html.find(R"(<script type="module" src="/dashboard/app.js"></script>)"), std::string::npos);
  EXPECT_NE(html.find(R"(href="/dashboard/app.css")"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script>"), std::string::npos) << "no inline script (the CSP forbids it)";
  EXPECT_EQ(html.find("style="), std::string::npos) << "no inline style (the CSP forbids it)";
  const std::string script(find_asset("/dashboard/app.js")->body);
  EXPECT_NE(script.find("/api/metrics/history"), std::string::npos);
  EXPECT_NE(script.find("/api/alerts"), std::string::npos);
  EXPECT_NE(std::string(find_asset("/dashboard/app.css")->body).find(".u-legend"), std::string::npos)
      << "uPlot's CSS is bundled";
}

TEST(WebAssets, UPlotsLicenceShips) {
  const std::string text(find_asset("/dashboard/licenses")->body);
  EXPECT_NE(text.find("==== uplot 1.6."), std::string::npos) << text;
  EXPECT_NE(text.find("(MIT)"), std::string::npos);
  EXPECT_NE(text.find("Permission is hereby granted"), std::string::npos);
}

TEST(WebAssets, TheChatIsAtTheRootWithItsOwnFiles) {
  for (const char* path : {"/", "/chat/app.js", "/chat/app.css", "/chat/favicon.svg", "/chat/licenses"}) {
    const Asset* asset = find_asset(path);
    ASSERT_NE(asset, nullptr) << path;
    EXPECT_FALSE(asset->body.empty()) << path;
  }
  EXPECT_EQ(find_asset("/")->content_type, "text/html; charset=utf-8");
  const std::string html(find_asset("/")->body);
  EXPECT_NE(html.find(R"(<script type="module" src="/chat/app.js"></script>)"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script>"), std::string::npos) << "no inline script (the CSP forbids it)";
  EXPECT_EQ(html.find("style="), std::string::npos) << "no inline style (the CSP forbids it)";
  const std::string script(find_asset("/chat/app.js")->body);
  EXPECT_NE(script.find("/v1/chat/completions"), std::string::npos);
  EXPECT_NE(script.find("/v1/clawbot/prompts"), std::string::npos);
  const std::string licences(find_asset("/chat/licenses")->body);
  for (const char* package : {"==== marked ", "==== dompurify ", "==== highlight.js "})
    EXPECT_NE(licences.find(package), std::string::npos) << package;
}

}  // namespace
}  // namespace clawbot::web
