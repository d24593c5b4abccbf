// SIGHUP before Server::Run listens for signals would end the process (its
// default action). serve blocks it from its first step; Run unblocks it once
// its signal set exists, so an early SIGHUP is a reload, handled once running.
#pragma once

namespace pgshift::proxy {

void HoldReloadSignal();
void ReleaseReloadSignal();

}  // namespace pgshift::proxy
