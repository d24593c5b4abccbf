#include "proxy/reload_signal.h"

#include <pthread.h>
#include <signal.h>

namespace pgshift::proxy {

namespace {
void MaskReloadSignal(int how) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(how, &set, nullptr);
}
}  // namespace

void HoldReloadSignal() { MaskReloadSignal(SIG_BLOCK); }
void ReleaseReloadSignal() { MaskReloadSignal(SIG_UNBLOCK); }

}  // namespace pgshift::proxy
