// clawbot: one binary, subcommands. This file only maps the command line to each part's entry point.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "bench/bench.h"
#include "client/cli.h"
#include "client/code_cmd.h"
#include "client/doctor.h"
#include "client/sessions_cmd.h"
#include "discovery/discovery.h"
#include "gateway/gateway.h"
#include "monitor/metrics.h"
#include "ops/integrity.h"
#include "ops/ops.h"
#include "ops/plan.h"
#include "server/serve.h"

int main(int argc, char** argv) {
  CLI::App app{"clawbot: a local AI assistant platform (back-end node, gateway and front-end in one binary)"};
  app.set_version_flag("--version", std::string("clawbot ") + CLAWBOT_VERSION);
  app.require_subcommand(1);

  clawbot::server::ServeOptions serve;
  auto* serve_cmd = app.add_subcommand("serve", "Back-end node: load a GGUF model and serve the OpenAI API");
  serve_cmd->add_option("-m,--model", serve.model, "GGUF file: a path, or a name found in $CLAWBOT_MODELS")
      ->required();
  serve_cmd->add_option("--host", serve.host, "Address to listen on")->capture_default_str();
  serve_cmd->add_option("--port", serve.port, "Port to listen on (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  serve_cmd->add_option("-c,--ctx", serve.ctx, "Context size in tokens (0: the model's own)")
      ->capture_default_str();
  serve_cmd->add_option("-t,--threads", serve.threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  serve_cmd->add_option("-b,--batch", serve.batch, "Prompt tokens per engine step")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  serve_cmd->add_option("--chat-template", serve.chat_template,
                        "Built-in chat template (chatml, llama3, phi3, ...) for a model without one");
  serve_cmd->add_option("--alias", serve.alias, "Model id shown to clients (default: the file name)");
  serve_cmd->add_option("--max-body-bytes", serve.max_body_bytes, "Largest request body accepted")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 34));
  serve_cmd
      ->add_option("--header-timeout", serve.header_timeout_s,
                   "Seconds a client may take to send a request's headers")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  serve_cmd
      ->add_option("--min-body-rate", serve.min_body_rate,
                   "Bytes/s a request body must average after 10 s (0: any rate)")
      ->capture_default_str();
  serve_cmd
      ->add_option("--gpu-layers,--n-gpu-layers", serve.gpu_layers,
                   "Layers offloaded to the GPU of a CUDA or Vulkan build (-1: all, 0: none)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1 << 20));
  serve_cmd->add_option("-p,--parallel", serve.parallel, "Requests decoded together (slots)")
      ->capture_default_str();
  serve_cmd->add_option("--queue-max", serve.queue_max, "Requests waiting for a slot before 503")
      ->capture_default_str()
      ->check(CLI::Range(0, 1'000'000));
  serve_cmd->add_option("--prefill-chunk", serve.prefill_chunk, "Prompt tokens per step while others decode")
      ->capture_default_str()
      ->check(CLI::Range(8, 65536));
  serve_cmd->add_option("--cache-ram", serve.cache_ram_mib, "MiB of host RAM for saved sequences (cold tier)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  serve_cmd->add_flag("--fit", serve.fit, "Lower --ctx, then --parallel, until the KV cache fits in memory");
  serve_cmd->add_flag(
      "--kv-unified", serve.kv_unified,
      "One KV cache shared by all slots (shared prefixes stored once; slower batched decode)");
  serve_cmd->add_flag("--no-cache", serve.no_cache, "Prefill every request from scratch (no KV reuse)");
  serve_cmd->add_option("--flash-attn", serve.flash_attn, "FlashAttention: auto, on or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  serve_cmd
      ->add_option("--prompts-first", serve.prompts_first,
                   "A prompt that fits in one step runs in a step of its own, ahead of the decoding "
                   "streams: on or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  serve_cmd->add_option("--kv-type", serve.kv_type, "KV cache type: f16, q8_0 or q4_0")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}));
  serve_cmd
      ->add_option("--sse-keepalive", serve.sse_keepalive_s,
                   "Seconds between keep-alives on a waiting stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  serve_cmd->add_option("--tls-cert", serve.tls_cert,
                        "PEM certificate chain: serve HTTPS only (with --tls-key)");
  serve_cmd->add_option("--tls-key", serve.tls_key, "PEM private key of --tls-cert");
  serve_cmd->add_option("--tls-client-ca", serve.tls_client_ca,
                        "PEM CA file: require client certificates it signed (mutual TLS)");
  serve_cmd->add_flag("--no-advertise", serve.no_advertise,
                      "Do not announce this node on the LAN (mDNS/DNS-SD, _clawbot._tcp)");
  serve_cmd->add_flag("-v,--verbose", serve.verbose, "Log libllama's messages too");
  serve_cmd->add_flag(
      "--verify", serve.verify,
      "Refuse to load the model unless its SHA-256 matches MODEL.sha256 or a SHA256SUMS beside it");
  serve_cmd->add_option("--key-file", serve.key_file,
                        "Key of an encrypted model (clawbot encrypt): 64 hex characters or 32 bytes");
  serve_cmd->add_option(
      "--key-env", serve.key_env,
      "Key of an encrypted model: the environment variable that holds it (64 hex characters)");
  serve_cmd
      ->add_option("--slow-reader-timeout", serve.slow_reader_timeout_s,
                   "Seconds a stream's client may read nothing while others wait for a slot before the "
                   "stream gives its slot up (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  serve_cmd
      ->add_option("--drain-timeout", serve.drain_timeout_s,
                   "Seconds the requests in progress may take to finish after SIGTERM")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  serve_cmd->add_option("--log-format", serve.log_format, "Log lines as text, or json (one object a line)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  serve_cmd->add_flag("--no-access-log", serve.no_access_log, "No log line per request");
  serve_cmd->add_flag("--strict-model", serve.strict_model,
                      "Answer 404 model_not_found to a request naming a model this node does not serve");

  clawbot::ops::SynthOptions synth;
  auto* models_cmd = app.add_subcommand("models", "Model-file tools");
  models_cmd->require_subcommand(1);
  auto* synth_cmd = models_cmd->add_subcommand(
      "synth", "Write a GGUF file with the shape of a real model and random weights, for benchmarks");
  synth_cmd->add_option("shape", synth.shape, "Shape to write (--list shows them)");
  synth_cmd->add_option("--quant", synth.quant, "f32, f16, q8_0 or q4_k_m")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "q8_0", "q4_k_m"}, CLI::ignore_case));
  synth_cmd->add_option(
      "-o,--output", synth.output,
      "File to write (default: ${XDG_CACHE_HOME:-~/.cache}/clawbot/models/SHAPE-QUANT.gguf)");
  synth_cmd->add_option("--seed", synth.seed, "Seed of the random weights")->capture_default_str();
  synth_cmd->add_option(
      "--vocab-from", synth.vocab_from,
      "GGUF file whose tokenizer is copied (default: the shape's; path or name in $CLAWBOT_MODELS)");
  synth_cmd->add_option("-t,--threads", synth.threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  synth_cmd->add_flag("--force", synth.force, "Write the file again even if a matching one exists");
  synth_cmd->add_flag("--list", synth.list, "List the shapes");

  clawbot::ops::ModelsListOptions models_list;
  auto* list_cmd = models_cmd->add_subcommand(
      "list", "The models in $CLAWBOT_MODELS: size, architecture, parameters, quantization, context");
  list_cmd->add_flag("--json", models_list.json, "Print JSON");
  clawbot::ops::ModelsShowOptions models_show;
  auto* show_cmd = models_cmd->add_subcommand("show", "A model's GGUF metadata (arrays abbreviated)");
  show_cmd->add_option("model", models_show.model, "Path, name in $CLAWBOT_MODELS, or http(s):// URL")
      ->required();
  show_cmd->add_flag("--json", models_show.json, "Print JSON");
  show_cmd->add_flag("--tensors", models_show.tensors, "Also list the tensors");
  clawbot::ops::ModelsPullOptions models_pull;
  auto* pull_cmd = models_cmd->add_subcommand(
      "pull", "Download a model (resumes, checks SHA-256); hf://ORG/REPO/FILE for Hugging Face");
  pull_cmd->add_option("url", models_pull.url, "http(s):// or hf:// URL")->required();
  pull_cmd->add_option("-o,--output-dir", models_pull.output_dir,
                       "Directory to write to (default: the first of $CLAWBOT_MODELS)");
  pull_cmd->add_option("--sha256", models_pull.sha256,
                       "Expected SHA-256 (default: URL.sha256 when the server has it)");
  pull_cmd->add_flag("--no-progress", models_pull.no_progress, "No progress bar");

  clawbot::ops::PlanOptions plan;
  auto* plan_cmd = app.add_subcommand(
      "plan", "Memory planner: will this model, context and parallelism fit? (reads only the GGUF header)");
  plan_cmd
      ->add_option("model", plan.model, "GGUF file: path, name in $CLAWBOT_MODELS, http(s):// or hf:// URL")
      ->required();
  plan_cmd
      ->add_option("-c,--ctx", plan.ctx, "Tokens per request (0: the model's own, at most 8192, as serve)")
      ->capture_default_str();
  plan_cmd->add_option("-p,--parallel", plan.parallel, "Slots (requests decoded together)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  plan_cmd->add_option("--kv-type", plan.kv_type, "KV cache type: f16, q8_0 or q4_0")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}));
  plan_cmd->add_flag("--kv-unified", plan.kv_unified,
                     "One KV cache shared by all slots (as serve --kv-unified)");
  plan_cmd
      ->add_option("--memory", plan.memory_gib,
                   "Plan for a machine with this many GiB (default: this one's available RAM)")
      ->check(CLI::PositiveNumber);
  plan_cmd->add_flag("--json", plan.json, "Print JSON");
  plan_cmd->add_flag("--compare-naive", plan.compare_naive,
                     "Also show the rule of thumb (2 bytes a parameter + ...)");

  clawbot::ops::VerifyOptions verify;
  auto* verify_cmd = app.add_subcommand(
      "verify", "SHA-256 of a model file, checked against MODEL.sha256, --sha256 or a SHA256SUMS manifest");
  verify_cmd->add_option("model", verify.model, "Model file")->required();
  verify_cmd->add_option("--sha256", verify.sha256, "The expected SHA-256 (64 hex characters)");
  verify_cmd->add_option("--manifest", verify.manifest,
                         "SHA256SUMS-format file listing the model (default: SHA256SUMS beside it, if any)");
  verify_cmd->add_flag("--md5", verify.md5, "Also compute MD5 (checked against MODEL.md5 when present)");
  verify_cmd->add_option("--expect-md5", verify.expect_md5,
                         "The expected MD5 (32 hex characters; implies --md5)");
  verify_cmd->add_flag("--write", verify.write, "Record the sum in MODEL.sha256 (and MODEL.md5 with --md5)");
  verify_cmd->add_flag_callback(
      "--no-progress", [&verify] { verify.progress = false; }, "No progress bar on stderr");

  clawbot::ops::EncryptCommand encrypt;
  auto* encrypt_cmd = app.add_subcommand(
      "encrypt",
      "Encrypt a model file (AES-256-GCM, authenticated chunks); `serve` loads it into memory only");
  encrypt_cmd->add_option("input", encrypt.input, "File to encrypt");
  encrypt_cmd->add_option("-o,--output", encrypt.output, "Encrypted file (default: INPUT.enc)");
  encrypt_cmd->add_option("--key-file", encrypt.key_file, "Key: a file of 64 hex characters or 32 bytes");
  encrypt_cmd->add_option("--key-env", encrypt.key_env,
                          "Key: the environment variable holding 64 hex characters");
  encrypt_cmd->add_option("--gen-key", encrypt.gen_key,
                          "Only write a new random key to this file (mode 0600)");
  encrypt_cmd->add_option("--chunk-size", encrypt.chunk_size, "Plaintext bytes per authenticated chunk")
      ->capture_default_str()
      ->check(CLI::Range(clawbot::ops::encrypted_chunk_min, clawbot::ops::encrypted_chunk_max));
  encrypt_cmd->add_option("-t,--threads", encrypt.threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  encrypt_cmd->add_flag("--force", encrypt.force, "Replace an existing output file");
  encrypt_cmd->add_flag("--remove-plaintext", encrypt.remove_plaintext,
                        "Delete INPUT after checking that the .enc decrypts back to exactly its bytes");
  encrypt_cmd->add_flag_callback(
      "--no-progress", [&encrypt] { encrypt.progress = false; }, "No progress bar on stderr");

  clawbot::ops::DecryptCommand decrypt;
  auto* decrypt_cmd = app.add_subcommand(
      "decrypt", "Decrypt a file made by `clawbot encrypt`, after authenticating every chunk");
  decrypt_cmd->add_option("input", decrypt.input, "Encrypted file")->required();
  decrypt_cmd->add_option("-o,--output", decrypt.output,
                          "Plaintext file, mode 0600 (default: INPUT without .enc)");
  decrypt_cmd->add_option("--key-file", decrypt.key_file, "Key: a file of 64 hex characters or 32 bytes");
  decrypt_cmd->add_option("--key-env", decrypt.key_env,
                          "Key: the environment variable holding 64 hex characters");
  decrypt_cmd->add_option("-t,--threads", decrypt.threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  decrypt_cmd->add_flag("--force", decrypt.force, "Replace an existing output file");
  decrypt_cmd->add_flag_callback(
      "--no-progress", [&decrypt] { decrypt.progress = false; }, "No progress bar on stderr");

  clawbot::bench::BenchOptions bench;
  auto* bench_cmd = app.add_subcommand(
      "bench", "Serving benchmark of any OpenAI-compatible endpoint: TTFT, TPOT, ITL, tok/s percentiles");
  bench_cmd->add_option("--url", bench.url, "Base URL of the endpoint")->capture_default_str();
  bench_cmd->add_option("--model", bench.model, "Model to ask for (default: the first of GET /v1/models)");
  bench_cmd->add_option("-c,--concurrency", bench.concurrency, "Clients sending at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  bench_cmd
      ->add_option("-n,--requests", bench.requests, "Requests to send (default 100; none with --duration)")
      ->check(CLI::Range(1, 100'000'000));
  bench_cmd->add_option("--duration", bench.duration_s, "Seconds to keep starting requests")
      ->check(CLI::PositiveNumber);
  bench_cmd
      ->add_option("--workload", bench.workload,
                   "independent, or conversations (multi-turn, shared system prompt)")
      ->capture_default_str()
      ->check(CLI::IsMember({"independent", "conversations"}));
  bench_cmd->add_option("--conversations", bench.conversations, "Conversations, interleaved over the clients")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  bench_cmd->add_option("--turns", bench.turns, "User turns per conversation")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  bench_cmd
      ->add_option("--system-prompt-tokens", bench.system_prompt_tokens,
                   "Shared system prompt (approx. tokens)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10'000'000));
  bench_cmd->add_option("--prompt-tokens", bench.prompt_tokens, "Each user message (approx. tokens)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000'000));
  bench_cmd->add_option("--max-tokens", bench.max_tokens, "Output tokens asked for (max_tokens)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000'000));
  bench_cmd->add_option("--temperature", bench.temperature, "Sampling temperature")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  bench_cmd->add_option("--seed", bench.seed, "Seed of the prompts (and the requests' seed)")
      ->capture_default_str();
  bench_cmd->add_option("--api-key", bench.api_key, "Sent as Authorization: Bearer <key>");
  bench_cmd->add_option("--timeout", bench.timeout_s, "Seconds of silence before a request fails")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench_cmd->add_flag_callback(
      "--no-ignore-eos", [&bench] { bench.ignore_eos = false; },
      "Do not send ignore_eos and min_tokens (for endpoints that refuse unknown fields)");
  bench_cmd->add_flag("--json", bench.json, "Print a JSON object instead of the table");
  bench_cmd->add_flag("--no-progress", bench.no_progress, "No progress bar on stderr");
  bool memory_bandwidth = false;
  bench_cmd->add_flag("--memory-bandwidth", memory_bandwidth,
                      "Only measure this machine's memory read bandwidth (bytes/s on stdout)");

  clawbot::client::SessionsOptions sessions;
  auto* sessions_cmd = app.add_subcommand(
      "sessions", "Stored conversations of chat and ask --save: list, show, rename, rm, export");
  sessions_cmd->require_subcommand(1)->fallthrough();  // fallthrough: --db also after the action
  sessions_cmd->add_option("--db", sessions.db,
                           "Session database (default: session_db of clawbot.json, else "
                           "${XDG_DATA_HOME:-~/.local/share}/clawbot/sessions.db)");
  sessions_cmd->add_subcommand("list", "Sessions, most recently updated first")
      ->add_flag("--json", sessions.json, "Print a JSON array instead of the table");
  sessions_cmd->add_subcommand("show", "Print a conversation")
      ->add_option("name", sessions.name, "Session name or id")
      ->required();
  auto* sessions_rename_cmd = sessions_cmd->add_subcommand("rename", "Rename a session");
  sessions_rename_cmd->add_option("old", sessions.name, "Session name or id")->required();
  sessions_rename_cmd->add_option("new", sessions.new_name, "New name")->required();
  sessions_cmd->add_subcommand("rm", "Delete a session and its messages")
      ->add_option("name", sessions.name, "Session name or id")
      ->required();
  auto* sessions_export_cmd = sessions_cmd->add_subcommand("export", "Write a session as Markdown or JSON");
  sessions_export_cmd->add_option("name", sessions.name, "Session name or id")->required();
  sessions_export_cmd->add_option("--format", sessions.format, "md or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "json"}));
  sessions_export_cmd->add_option("-o,--output", sessions.output, "File to write (default: stdout)");

  clawbot::discovery::DiscoverOptions discover;
  auto* discover_cmd = app.add_subcommand(
      "discover", "List the clawbot nodes and gateways on the LAN (mDNS/DNS-SD), with their latency");
  discover_cmd->add_option("--timeout", discover.timeout_ms, "Milliseconds to wait for answers")
      ->capture_default_str()
      ->check(CLI::Range(100, 60'000));
  discover_cmd->add_flag("--json", discover.json, "Print a JSON array instead of the table");

  const auto run_client_command = clawbot::client::add_client_commands(app);
  const auto run_code_command = clawbot::client::add_code_command(app);
  const auto run_doctor_command = clawbot::client::add_doctor_command(app);
  const auto run_gateway_command = clawbot::gateway::add_gateway_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return clawbot::client::exit_for_parse_error(app, e, argc, argv);
  }
  if (const auto status = run_client_command()) return *status;
  if (const auto status = run_code_command()) return *status;
  if (const auto status = run_doctor_command()) return *status;
  if (const auto status = run_gateway_command()) return *status;
  if (bench_cmd->parsed() && memory_bandwidth) {
    // The ceiling for decode speed on a memory-bound machine: bytes/s that a plain read loop reaches.
    const double bw = clawbot::monitor::measure_read_bandwidth();
    std::fprintf(stderr, "memory read bandwidth: %.2f GB/s (1 GiB, 2 threads, best of 3)\n", bw / 1e9);
    std::printf("%.0f\n", bw);
    return bw > 0 ? 0 : 1;
  }
  if (bench_cmd->parsed()) return clawbot::bench::run_bench(bench);
  if (sessions_cmd->parsed()) {
    sessions.action = sessions_cmd->get_subcommands().at(0)->get_name();
    sessions.db = clawbot::client::session_db_path(sessions.db);  // --db, else clawbot.json's session_db
    return clawbot::client::run_sessions(sessions);
  }
  if (serve_cmd->parsed()) return clawbot::server::run_serve(serve);
  if (discover_cmd->parsed()) return clawbot::discovery::run_discover(discover);
  if (synth_cmd->parsed()) return clawbot::ops::run_models_synth(synth);
  if (verify_cmd->parsed()) return clawbot::ops::run_verify(verify);
  if (encrypt_cmd->parsed()) return clawbot::ops::run_encrypt(encrypt);
  if (decrypt_cmd->parsed()) return clawbot::ops::run_decrypt(decrypt);
  if (list_cmd->parsed()) return clawbot::ops::run_models_list(models_list);
  if (show_cmd->parsed()) return clawbot::ops::run_models_show(models_show);
  if (pull_cmd->parsed()) return clawbot::ops::run_models_pull(models_pull);
  if (plan_cmd->parsed()) return clawbot::ops::run_plan(plan);
  return 0;
}
