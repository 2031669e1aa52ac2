// clawbot: one binary, subcommands. This file only maps the command line to each part's entry point.
#include <CLI/CLI.hpp>

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
  serve_cmd->add_flag("-v,--verbose", serve.verbose, "Log libllama's messages too");

  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed()) return clawbot::server::run_serve(serve);
  return 0;
}
