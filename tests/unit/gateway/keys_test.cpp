// API keys: created by KeyStore, checked by KeyVerifier (a second connection, as the gateway is to the CLI).
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "../support/temp_dir.h"
#include "client/sqlite_db.h"
#include "client/store_error.h"
#include "gateway/door/door.h"

namespace door = clawbot::gateway::door;
using clawbot::client::StoreError;
using clawbot::client::StoreErrorKind;
using clawbot::testing::TempDir;

namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST(GatewayKeys, CreatedKeyHasTheFormatAndVerifies) {
  TempDir dir("clawbot-keys-");
  door::KeyStore store(dir / "gateway.db");
  const auto created = store.create("laptop-anna", 60, 5000);
  EXPECT_TRUE(std::regex_match(created.key, std::regex("cbk_[0-9a-f]{12}_[0-9A-Za-z]{32}"))) << created.key;
  EXPECT_EQ(created.key.substr(4, 12), created.row.info.id);
  EXPECT_FALSE(created.row.revoked());

  door::KeyVerifier verifier(dir / "gateway.db");
  EXPECT_EQ(verifier.active_keys(), 1u);
  const auto info = verifier.verify(created.key);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->id, created.row.info.id);
  EXPECT_EQ(info->name, "laptop-anna");
  EXPECT_EQ(info->requests_per_minute, 60);
  EXPECT_EQ(info->tokens_per_minute, 5000);
}

TEST(GatewayKeys, WrongSecretUnknownIdAndMalformedKeysAreRefused) {
  TempDir dir("clawbot-keys-");
  door::KeyStore store(dir / "gateway.db");
  const std::string key = store.create("ci").key;
  door::KeyVerifier verifier(dir / "gateway.db");

  door::KeyRejection why{};
  std::string wrong = key;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  EXPECT_FALSE(verifier.verify(wrong, &why));
  EXPECT_EQ(why, door::KeyRejection::wrong_secret);

  std::string unknown = key;
  unknown[4] = unknown[4] == '0' ? '1' : '0';  // another id, same secret
  EXPECT_FALSE(verifier.verify(unknown, &why));
  EXPECT_EQ(why, door::KeyRejection::unknown_id);

  for (const std::string& bad :
       {std::string(), std::string("cbk_"), key + "x", key.substr(0, key.size() - 1), "Bearer " + key,
        "xbk" + key.substr(3), key.substr(0, 4) + "ABCDEF012345" + key.substr(16),
        key.substr(0, 16) + "-" + key.substr(17), key.substr(0, 20) + "!" + key.substr(21)}) {
    EXPECT_FALSE(verifier.verify(bad, &why)) << bad;
    EXPECT_EQ(why, door::KeyRejection::malformed) << bad;
  }
  EXPECT_TRUE(verifier.verify(key));
}

TEST(GatewayKeys, RevocationInAnotherConnectionIsSeenWithinASecond) {
  TempDir dir("clawbot-keys-");
  door::KeyStore store(dir / "gateway.db");
  const auto created = store.create("temp");
  const auto keep = store.create("keep");
  door::KeyVerifier verifier(dir / "gateway.db");
  ASSERT_TRUE(verifier.verify(created.key));

  door::KeyStore admin(dir / "gateway.db");  // another connection, as `keys revoke` in another process
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(admin.revoke(created.row.info.id));
  door::KeyRejection why{};
  while (verifier.verify(created.key, &why) &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(5))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(verifier.verify(created.key, &why));
  EXPECT_EQ(why, door::KeyRejection::revoked);
  EXPECT_LT(waited, std::chrono::milliseconds(1500));
  EXPECT_TRUE(verifier.verify(keep.key));  // the other key is untouched
  EXPECT_EQ(verifier.active_keys(), 1u);

  // A key created later is let in just as soon.
  const auto later = admin.create("later");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!verifier.verify(later.key) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(verifier.verify(later.key));
}

// Issue 17 bug 4: a key was refused until the poller's next look at the file (up to seconds in the field).
TEST(GatewayKeys, AKeyWorksAsSoonAsCreateReturns) {
  TempDir dir("clawbot-keys-");
  door::KeyStore admin(dir / "gateway.db");  // another connection, as `keys create` in another process
  admin.create("first");
  door::KeyVerifier verifier(dir / "gateway.db");
  for (int i = 0; i < 20; ++i) {  // each right after its commit, long before the next poll
    const auto created = admin.create("new-" + std::to_string(i));
    door::KeyRejection why{};
    EXPECT_TRUE(verifier.verify(created.key, &why)) << i << ": " << door::to_string(why);
  }
  EXPECT_EQ(verifier.active_keys(), 21u);
  // An id that does not exist is still refused, as an unknown id.
  std::string unknown = admin.create("x").key;
  unknown.replace(4, 12, "000000000000");
  door::KeyRejection why{};
  EXPECT_FALSE(verifier.verify(unknown, &why));
  EXPECT_EQ(why, door::KeyRejection::unknown_id);
}

TEST(GatewayKeys, TheDatabaseHoldsSaltedHashesNotKeys) {
  TempDir dir("clawbot-keys-");
  const std::string db_path = dir / "gateway.db";
  std::vector<door::Created> keys;
  {
    door::KeyStore store(db_path);
    keys.push_back(store.create("one"));
    keys.push_back(store.create("two"));
  }
  clawbot::client::sqlite::Database db(db_path);
  clawbot::client::sqlite::Statement rows(db, "SELECT id, salt, hash FROM api_keys ORDER BY rowid");
  std::vector<std::string> salts, hashes;
  while (rows.step()) {
    salts.push_back(rows.text_at(1));
    hashes.push_back(rows.text_at(2));
    EXPECT_EQ(rows.text_at(1).size(), 32u);  // 16 bytes, hex
    EXPECT_EQ(rows.text_at(2).size(), 64u);  // SHA-256, hex
  }
  ASSERT_EQ(hashes.size(), 2u);
  EXPECT_NE(salts[0], salts[1]);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string secret = keys[i].key.substr(17);
    EXPECT_NE(hashes[i], keys[i].key);
    EXPECT_EQ(hashes[i].find(secret), std::string::npos);
  }
  // Nowhere in the files on disk (the database and its WAL).
  const std::string bytes = file_bytes(db_path) + file_bytes(db_path + "-wal");
  ASSERT_FALSE(bytes.empty());
  for (const auto& created : keys) EXPECT_EQ(bytes.find(created.key.substr(17)), std::string::npos);

  struct stat st {};
  ASSERT_EQ(::stat(db_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(GatewayKeys, NamesListAndRevoke) {
  TempDir dir("clawbot-keys-");
  door::KeyStore store(dir / "gateway.db");
  const auto first = store.create("build-bot", 0, 100);
  try {
    store.create("build-bot");
    FAIL() << "a second active key with the same name was accepted";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.kind(), StoreErrorKind::name_taken);
    EXPECT_NE(std::string(e.what()).find(first.row.info.id), std::string::npos) << e.what();
  }
  for (const std::string& bad : {std::string(), std::string(65, 'a'), std::string("tab\there"),
                                 std::string("0123456789ab"), std::string("cbk_x")}) {
    try {
      store.create(bad);
      FAIL() << "accepted the name '" << bad << "'";
    } catch (const StoreError& e) {
      EXPECT_EQ(e.kind(), StoreErrorKind::invalid_argument) << bad;
    }
  }
  EXPECT_THROW(store.create("negative", -1, 0), StoreError);

  EXPECT_TRUE(store.revoke("build-bot"));         // by name
  EXPECT_FALSE(store.revoke("build-bot"));        // no active key has that name now
  EXPECT_FALSE(store.revoke(first.row.info.id));  // already revoked
  EXPECT_FALSE(store.revoke("nobody"));
  const auto again = store.create("build-bot");  // a revoked key's name may be reused
  EXPECT_NE(again.row.info.id, first.row.info.id);

  const auto rows = store.list();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].info.id, first.row.info.id);
  EXPECT_TRUE(rows[0].revoked());
  EXPECT_EQ(rows[0].info.tokens_per_minute, 100);
  EXPECT_FALSE(rows[1].revoked());
  const auto found = store.find(first.row.info.id);
  ASSERT_TRUE(found);
  EXPECT_TRUE(found->revoked());
  EXPECT_EQ(store.find("build-bot")->info.id, again.row.info.id);  // the active one
}

TEST(GatewayKeys, KeyFromAuthorizationHeader) {
  using door::KeyVerifier;
  EXPECT_EQ(KeyVerifier::key_from_authorization("Bearer cbk_abc"), "cbk_abc");
  EXPECT_EQ(KeyVerifier::key_from_authorization("bearer   cbk_abc "), "cbk_abc");
  EXPECT_EQ(KeyVerifier::key_from_authorization("cbk_abc"), "cbk_abc");
  EXPECT_EQ(KeyVerifier::key_from_authorization(""), "");
}

TEST(GatewayKeys, AForeignDatabaseIsRefused) {
  TempDir dir("clawbot-keys-");
  {
    clawbot::client::sqlite::Database db(dir / "other.db");
    db.exec("CREATE TABLE t (x)");
  }
  try {
    door::KeyStore store(dir / "other.db");
    FAIL() << "opened a database with foreign tables";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.kind(), StoreErrorKind::unusable);
  }
}
