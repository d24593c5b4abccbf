// Running helper commands and child processes from tests.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace pgshift::testing {

// Runs a shell command; returns its exit status. Output goes to `log_path`
// when given, else is discarded.
int RunCommand(const std::string& command, const std::string& log_path = "");

// Runs a shell command; returns its exit status and puts what it printed
// (stdout and stderr together) in `output`.
int CaptureCommand(const std::string& command, std::string& output);

// Sends `request` to 127.0.0.1:port and returns everything the server
// answered until it closed the connection.
std::string HttpExchange(int port, const std::string& request);

// A port on 127.0.0.1 that was free a moment ago, below the kernel's
// ephemeral range (so that no outgoing connection takes it meanwhile), and
// not handed out before by this process.
int FreePort();

// Something on 127.0.0.1 that completes the TCP handshake (the kernel does,
// from the listen backlog) and then never says a word: a server that hangs.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }
  // True once a client has connected (the kernel completes the handshake
  // though nothing accepts), polling up to `timeout_ms`.
  bool AwaitConnection(int timeout_ms) const;

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A fresh temporary directory, removed by RemoveTree.
std::string MakeTempDir(const std::string& prefix);
void RemoveTree(const std::string& path);

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

// True once something accepts TCP connections on 127.0.0.1:port, polling up
// to `timeout_ms`.
bool WaitForPort(int port, int timeout_ms);

// Waits for a child; returns its exit code, or -1 after `timeout_ms`
// (the child is then killed), or 128+signal if it was killed by one.
int WaitForExit(pid_t pid, int timeout_ms);

}  // namespace pgshift::testing
