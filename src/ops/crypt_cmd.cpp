// `clawbot encrypt` and `clawbot decrypt`: their command lines and what they print; the cryptography is in
// crypt.cpp.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include <CLI/CLI.hpp>

#include "common/cli_error.h"
#include "ops/file_io.h"
#include "ops/integrity.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;

int generate_key(const EncryptCommand& command) {
  if (!command.input.empty()) {
    return cli_error("clawbot encrypt",
                     "--gen-key only writes a key; encrypt with --key-file in a second command", 2);
  }
  const ModelKey key = generate_key_file(command.gen_key);
  std::fprintf(stderr,
               "clawbot encrypt: wrote a new key to %s (64 hex characters, mode 0600), key id %s.\n"
               "Keep it apart from the encrypted files, and keep a copy: without it they cannot be "
               "decrypted.\n",
               command.gen_key.c_str(), key.id_hex().c_str());
  return 0;
}

// The .enc's own sum, which `serve --verify` and `verify` check it against.
void record_sum(const std::string& output, bool progress) {
  VerifyOptions record;
  record.model = output;
  record.write = true;
  record.progress = progress;
  if (std::error_code ec; fs::exists(output + ".sha256", ec)) fs::remove(output + ".sha256", ec);  // --force
  const VerifyReport recorded = verify_model_file(record);
  std::fprintf(stderr, "clawbot encrypt: recorded its SHA-256 in %s (serve --verify checks it)\n",
               recorded.written.empty() ? "?" : recorded.written.front().c_str());
}

void remove_plaintext(const EncryptCommand& command, const std::string& output, const ModelKey& key,
                      const CryptOptions& options) {
  const CryptStats checked = compare_decrypted(output, key, command.input, options);
  if (::unlink(command.input.c_str()) != 0) {
    throw CryptError(CryptFailure::io, "cannot delete '" + command.input + "': " + std::strerror(errno));
  }
  std::fprintf(stderr,
               "clawbot encrypt: %s decrypts to exactly the bytes of %s (%.2f s): deleted %s (a file "
               "system may keep its old blocks; use full-disk encryption for plaintext that must not "
               "survive)\n",
               output.c_str(), command.input.c_str(), checked.seconds, command.input.c_str());
}

int encrypt(const EncryptCommand& command) {
  if (command.input.empty()) {
    return cli_error("clawbot encrypt", "name the file to encrypt (or --gen-key FILE to make a key)", 2);
  }
  const ModelKey key = load_key(command.key_file, command.key_env);
  if (!key.warning.empty()) std::fprintf(stderr, "clawbot encrypt: warning: %s\n", key.warning.c_str());
  const std::string output = command.output.empty() ? command.input + ".enc" : command.output;
  CryptOptions options;
  options.chunk_size = command.chunk_size;
  options.threads = command.threads;
  options.progress = command.progress;
  options.force = command.force;
  const CryptStats stats = encrypt_file(command.input, output, key, options);
  std::fprintf(stderr, "clawbot encrypt: %s -> %s: %s in %.2f s (%s, %d thread%s), key id %s\n",
               command.input.c_str(), output.c_str(), detail::format_bytes(stats.plaintext_bytes).c_str(),
               stats.seconds, detail::format_rate(stats.plaintext_bytes, stats.seconds).c_str(),
               stats.threads, stats.threads == 1 ? "" : "s", key.id_hex().c_str());
  record_sum(output, command.progress);
  if (command.remove_plaintext) {
    remove_plaintext(command, output, key, options);
  } else {
    std::fprintf(stderr,
                 "clawbot encrypt: the plaintext %s is still there: delete it once the .enc is where it "
                 "belongs (or run again with --remove-plaintext, which deletes it after checking that the "
                 ".enc decrypts back to it), and keep the key apart from the .enc\n",
                 command.input.c_str());
  }
  std::printf("%s\n", output.c_str());
  return 0;
}

std::string default_decrypt_output(const std::string& input) {
  if (input.size() > 4 && input.ends_with(".enc")) return input.substr(0, input.size() - 4);
  return {};
}

}  // namespace

int run_encrypt(const EncryptCommand& command) {
  try {
    return command.gen_key.empty() ? encrypt(command) : generate_key(command);
  } catch (const std::exception& e) {
    return cli_error("clawbot encrypt", e.what(), 1);
  }
}

int run_decrypt(const DecryptCommand& command) {
  try {
    const std::string output =
        command.output.empty() ? default_decrypt_output(command.input) : command.output;
    if (output.empty()) {
      return cli_error("clawbot decrypt",
                       "'" + command.input + "' does not end in .enc: name the output with -o FILE", 2);
    }
    const ModelKey key = load_key(command.key_file, command.key_env);
    if (!key.warning.empty()) std::fprintf(stderr, "clawbot decrypt: warning: %s\n", key.warning.c_str());
    CryptOptions options;
    options.threads = command.threads;
    options.progress = command.progress;
    options.force = command.force;
    const CryptStats stats = decrypt_file(command.input, output, key, options);
    std::fprintf(stderr,
                 "clawbot decrypt: %s -> %s: %s in %.2f s (%s, %d thread%s); every chunk authenticated\n",
                 command.input.c_str(), output.c_str(), detail::format_bytes(stats.plaintext_bytes).c_str(),
                 stats.seconds, detail::format_rate(stats.plaintext_bytes, stats.seconds).c_str(),
                 stats.threads, stats.threads == 1 ? "" : "s");
    std::printf("%s\n", output.c_str());
    return 0;
  } catch (const std::exception& e) {
    return cli_error("clawbot decrypt", e.what(), 1);
  }
}

std::function<std::optional<int>()> add_crypt_commands(CLI::App& app) {
  auto encrypt = std::make_shared<EncryptCommand>();
  auto* encrypt_cmd = app.add_subcommand(
      "encrypt",
      "Encrypt a model file (AES-256-GCM, authenticated chunks); `serve` loads it into memory only");
  encrypt_cmd->add_option("input", encrypt->input, "File to encrypt");
  encrypt_cmd->add_option("-o,--output", encrypt->output, "Encrypted file (default: INPUT.enc)");
  encrypt_cmd->add_option("--key-file", encrypt->key_file, "Key: a file of 64 hex characters or 32 bytes");
  encrypt_cmd->add_option("--key-env", encrypt->key_env,
                          "Key: the environment variable holding 64 hex characters");
  encrypt_cmd->add_option("--gen-key", encrypt->gen_key,
                          "Only write a new random key to this file (mode 0600)");
  encrypt_cmd->add_option("--chunk-size", encrypt->chunk_size, "Plaintext bytes per authenticated chunk")
      ->capture_default_str()
      ->check(CLI::Range(encrypted_chunk_min, encrypted_chunk_max));
  encrypt_cmd->add_option("-t,--threads", encrypt->threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  encrypt_cmd->add_flag("--force", encrypt->force, "Replace an existing output file");
  encrypt_cmd->add_flag("--remove-plaintext", encrypt->remove_plaintext,
                        "Delete INPUT after checking that the .enc decrypts back to exactly its bytes");
  encrypt_cmd->add_flag_callback(
      "--no-progress", [encrypt] { encrypt->progress = false; }, "No progress bar on stderr");

  auto decrypt = std::make_shared<DecryptCommand>();
  auto* decrypt_cmd = app.add_subcommand(
      "decrypt", "Decrypt a file made by `clawbot encrypt`, after authenticating every chunk");
  decrypt_cmd->add_option("input", decrypt->input, "Encrypted file")->required();
  decrypt_cmd->add_option("-o,--output", decrypt->output,
                          "Plaintext file, mode 0600 (default: INPUT without .enc)");
  decrypt_cmd->add_option("--key-file", decrypt->key_file, "Key: a file of 64 hex characters or 32 bytes");
  decrypt_cmd->add_option("--key-env", decrypt->key_env,
                          "Key: the environment variable holding 64 hex characters");
  decrypt_cmd->add_option("-t,--threads", decrypt->threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  decrypt_cmd->add_flag("--force", decrypt->force, "Replace an existing output file");
  decrypt_cmd->add_flag_callback(
      "--no-progress", [decrypt] { decrypt->progress = false; }, "No progress bar on stderr");

  return [=]() -> std::optional<int> {
    if (encrypt_cmd->parsed()) return run_encrypt(*encrypt);
    if (decrypt_cmd->parsed()) return run_decrypt(*decrypt);
    return std::nullopt;
  };
}

}  // namespace clawbot::ops
