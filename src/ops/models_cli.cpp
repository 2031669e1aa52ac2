// `clawbot models` (list, show, pull, synth): the command line. list, show and pull run in models_cmd.cpp (no
// libllama), synth in model_synth.cpp or, in a build without the engine, model_synth_no_engine.cpp: this file
// is linked only into the binaries, each of which has one of the two (the libraries' tests need neither).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <CLI/CLI.hpp>

#include "audio/whisper_file.h"
#include "common/cli_error.h"
#include "common/error.h"
#include "common/user_dirs.h"
#include "ops/ops.h"
#include "ops/plan.h"

namespace clawbot::ops {
namespace {

// `models synth whisper-tiny`: a whisper.cpp file (no libllama needed, so in every build).
int run_whisper_synth(const SynthOptions& options, bool quant_given) {
  try {
    const audio::WhisperShape* shape = audio::find_whisper_shape(options.shape);
    if (!shape)
      throw ClawbotError(ErrorKind::invalid_request, "no shape '" + options.shape + "' (--list shows them)");
    const std::string quant = quant_given ? options.quant : "f16";
    if (quant != "f16" && quant != "f32")
      throw ClawbotError(ErrorKind::invalid_request,
                         "whisper shapes are written in f16 or f32, not " + quant);
    std::string path = options.output;
    if (path.empty()) {
      const auto base = user_dirs::require(user_dirs::Kind::cache, "name the file with -o");
      std::filesystem::create_directories(base / "clawbot" / "models");
      path = (base / "clawbot" / "models" / (shape->name + "-" + quant + ".bin")).string();
    }
    const std::string label = audio::synthetic_whisper_label(*shape, quant == "f32", options.seed);
    std::error_code ec;
    if (!options.force && std::filesystem::exists(path, ec)) {
      const auto existing =
          audio::is_whisper_file(path) ? audio::read_whisper_file(path).synthetic : std::string();
      if (existing == label) {
        std::fprintf(stderr,
                     "clawbot models synth: reusing %s (same shape, quant and seed; --force rewrites it)\n",
                     path.c_str());
        std::printf("%s\n", path.c_str());
        return 0;
      }
      if (existing.empty())
        throw ClawbotError(ErrorKind::invalid_request,
                           path + " exists and is not a synthetic file: not overwritten");
    }
    const auto started = std::chrono::steady_clock::now();
    audio::write_synthetic_whisper(path, *shape, quant == "f32", options.seed);
    std::fprintf(stderr, "clawbot models synth: wrote %s (%.1f MiB, synthetic: random weights) in %.1f s\n",
                 path.c_str(), static_cast<double>(std::filesystem::file_size(path)) / (1 << 20),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    std::printf("%s\n", path.c_str());
    return 0;
  } catch (const std::exception& e) {
    return cli_error("clawbot models synth", e.what(), 1);
  }
}

void print_whisper_shapes() {
  std::printf("\n%-18s %-7s %6s %6s %6s %9s %7s %7s %9s  %s\n", "shape", "arch", "layers", "state", "mels",
              "heads", "vocab", "ctx", "params", "source");
  for (const auto& s : audio::whisper_shapes()) {
    const auto& h = s.hparams;
    const std::string layers = std::to_string(h.n_audio_layer) + "+" + std::to_string(h.n_text_layer);
    std::printf("%-18s %-7s %6s %6d %6d %9d %7d %7d %9s  %s\n", s.name.c_str(), "whisper", layers.c_str(),
                h.n_audio_state, h.n_mels, h.n_audio_head, h.n_vocab, h.n_audio_ctx, "-",
                "OpenAI whisper (whisper.cpp ggml .bin, speech to text)");
  }
}

}  // namespace

std::function<std::optional<int>()> add_models_command(CLI::App& app) {
  auto* models_cmd = app.add_subcommand("models", "Model-file tools");
  models_cmd->require_subcommand(1);

  auto synth = std::make_shared<SynthOptions>();
  auto* synth_cmd = models_cmd->add_subcommand(
      "synth", "Write a GGUF file with the shape of a real model and random weights, for benchmarks");
  synth_cmd->add_option("shape", synth->shape, "Shape to write (--list shows them)");
  synth_cmd->add_option("--quant", synth->quant, "f32, f16, q8_0 or q4_k_m")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "q8_0", "q4_k_m"}, CLI::ignore_case));
  synth_cmd->add_option(
      "-o,--output", synth->output,
      "File to write (default: ${XDG_CACHE_HOME:-~/.cache}/clawbot/models/SHAPE-QUANT.gguf)");
  synth_cmd->add_option("--seed", synth->seed, "Seed of the random weights")->capture_default_str();
  synth_cmd->add_option(
      "--vocab-from", synth->vocab_from,
      "GGUF file whose tokenizer is copied (default: the shape's; path or name in $CLAWBOT_MODELS)");
  synth_cmd->add_option("--chat-template-file", synth->chat_template_file,
                        "Jinja chat template to embed (default: the shape's, e.g. qwen3-tools-tiny's "
                        "templates/Qwen-Qwen3-0.6B.jinja beside its vocab file)");
  synth_cmd->add_option("-t,--threads", synth->threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  synth_cmd->add_flag("--force", synth->force, "Write the file again even if a matching one exists");
  synth_cmd->add_flag("--list", synth->list, "List the shapes");

  auto list = std::make_shared<ModelsListOptions>();
  auto* list_cmd = models_cmd->add_subcommand(
      "list", "The models in $CLAWBOT_MODELS: size, architecture, parameters, quantization, context");
  list_cmd->add_flag("--json", list->json, "Print JSON");

  auto show = std::make_shared<ModelsShowOptions>();
  auto* show_cmd = models_cmd->add_subcommand("show", "A model's GGUF metadata (arrays abbreviated)");
  show_cmd->add_option("model", show->model, "Path, name in $CLAWBOT_MODELS, or http(s):// URL")->required();
  show_cmd->add_flag("--json", show->json, "Print JSON");
  show_cmd->add_flag("--tensors", show->tensors, "Also list the tensors");

  auto pull = std::make_shared<ModelsPullOptions>();
  auto* pull_cmd = models_cmd->add_subcommand(
      "pull", "Download a model (resumes, checks SHA-256); hf://ORG/REPO/FILE for Hugging Face");
  pull_cmd->add_option("url", pull->url, "http(s):// or hf:// URL")->required();
  pull_cmd->add_option("-o,--output-dir", pull->output_dir,
                       "Directory to write to (default: the first of $CLAWBOT_MODELS)");
  pull_cmd->add_option("--sha256", pull->sha256,
                       "Expected SHA-256 (default: URL.sha256 when the server has it)");
  pull_cmd->add_flag("--no-progress", pull->no_progress, "No progress bar");

  return [=]() -> std::optional<int> {
    if (synth_cmd->parsed() && synth->shape.starts_with("whisper-"))
      return run_whisper_synth(*synth, synth_cmd->count("--quant") > 0);
    if (synth_cmd->parsed() && synth->list) {
      const int status = run_models_synth(*synth);
      print_whisper_shapes();
      return status;
    }
    if (synth_cmd->parsed()) return run_models_synth(*synth);
    if (list_cmd->parsed()) return run_models_list(*list);
    if (show_cmd->parsed()) return run_models_show(*show);
    if (pull_cmd->parsed()) return run_models_pull(*pull);
    return std::nullopt;
  };
}

}  // namespace clawbot::ops
