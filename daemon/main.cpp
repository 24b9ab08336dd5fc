// rgpu: one binary for the server, the client daemon, tokens, queries and the dashboard.
#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "log.hpp"

namespace {
void add_access_options(CLI::App* command, rgpu::AccessOptions& access) {
  command->add_option("-t,--token", access.token,
                      "Authentication token (seen by every local user in ps: prefer --token-file or RGPU_TOKEN)");
  command->add_option("--token-file", access.token_file, "File whose first line is the token (mode 0600)");
  command->add_option("--tls", access.tls,
                      "TLS: auto (TLS; a server first seen is remembered in the known-servers file), on (TLS; "
                      "only servers pinned, CA-signed or known), off (plaintext; the server must be off too)")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  command->add_option("--server-fingerprint", access.fingerprint,
                      "The server's key fingerprint (SHA256:..., as `rgpu server` logs it)");
  command->add_option("--ca", access.ca, "PEM file of CAs that sign the server's certificate (host name checked)");
  command->add_option("--known-servers", access.known_servers,
                      "Known-servers file [default: ~/.config/rgpu/known_servers]");
}
}  // namespace

int main(int argc, char** argv) {
  rgpu::init_logging_from_env();
  CLI::App app{"RGPU: share GPUs over the network"};
  app.require_subcommand(1);
  app.set_version_flag("-V,--version", RGPU_VERSION);

  rgpu::TokenOptions token;
  auto* token_cmd = app.add_subcommand("token", "Generate an authentication token");
  token_cmd->add_option("-n,--name", token.name, "Name for this token")->default_val("client");
  token_cmd->add_option("-c,--config", token.config,
                        "The server's rgpu.toml: also print its certificate's fingerprint for clients");

  rgpu::ServerOptions server;
  auto* server_cmd = app.add_subcommand("server", "Start the RGPU server");
  server_cmd->add_option("-p,--port", server.port, "Listen port [default: 9876]")->check(CLI::Range(1, 65535));
  server_cmd->add_option("-b,--bind", server.bind, "Bind address [default: 0.0.0.0]");
  server_cmd->add_option("--cert", server.cert, "TLS certificate file (PEM)");
  server_cmd->add_option("--key", server.key, "TLS private key file (PEM)");
  auto* config_opt = server_cmd->add_option("-c,--config", server.config, "Configuration file [default: rgpu.toml]");
  server_cmd->add_option("--pid-file", server.pid_file, "Write PID to file (for service managers)");
  server_cmd->add_flag("--generate-cert", server.generate_cert,
                       "Write a self-signed certificate and key to --cert/--key first (for testing)");
  server_cmd->add_option("--tls", server.tls,
                         "on: TLS only (a certificate of its own if none is configured); off: plaintext only")
      ->check(CLI::IsMember({"on", "off"}));

  rgpu::ClientOptions client;
  auto* client_cmd = app.add_subcommand("client", "Start the RGPU client daemon");
  client_cmd->add_option("-s,--server", client.servers, "Server address(es) (host:port), repeatable");
  auto* client_config_opt =
      client_cmd->add_option("-c,--config", client.config, "Configuration file [default: rgpu.toml]");
  client_cmd->add_option("--pid-file", client.pid_file, "Write PID to file (for service managers)");
  client_cmd->add_option("--socket", client.socket,
                         "Unix socket for applications [default: $XDG_RUNTIME_DIR/rgpu/client.sock]");
  client_cmd->add_option("--keepalive-timeout", client.keepalive_timeout,
                         "Seconds a server may leave an application's connection silent, though pinged, before "
                         "it is taken as gone for that application [default: client.keepalive_timeout, 15]")
      ->check(CLI::Range(2, 3600));
  add_access_options(client_cmd, client.access);

  rgpu::InfoOptions info;
  auto* info_cmd = app.add_subcommand("info", "Query GPU information from a server");
  info_cmd->add_option("-s,--server", info.server, "Server address to query (host:port)")->required();
  add_access_options(info_cmd, info.access);

  // Started by `rgpu server` for each application session; not for users (hidden from --help).
  auto* worker_cmd = app.add_subcommand("worker", "")->group("");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? rgpu::kExitOk : rgpu::kExitUsage;
  }

  if (token_cmd->parsed()) return rgpu::run_token(token);
  if (server_cmd->parsed()) {
    server.config_given = config_opt->count() > 0;
    return rgpu::run_server(server);
  }
  if (client_cmd->parsed()) {
    client.config_given = client_config_opt->count() > 0;
    return rgpu::run_client(client);
  }
  if (info_cmd->parsed()) return rgpu::run_info(info);
  if (worker_cmd->parsed()) return rgpu::run_worker();
  return rgpu::kExitUsage;
}
