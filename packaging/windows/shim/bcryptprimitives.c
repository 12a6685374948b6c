/*
 * bcryptprimitives.dll for running Rust executables under Wine 8 ONLY.
 *
 * Rust's std (>= 1.78) takes its randomness from bcryptprimitives.dll!ProcessPrng, which
 * Wine 8 (Debian 12) does not provide, so every Rust .exe fails to start there with
 * "Library bcryptprimitives.dll not found". This shim answers ProcessPrng from
 * RtlGenRandom (advapi32!SystemFunction036), which Wine implements from the host's
 * random source.
 *
 * Never ship it: real Windows has the genuine DLL, and the installer (tether.wxs) does
 * not include this file. It is built by packaging/windows/build-shim.sh and placed next
 * to the test executables only.
 */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* RtlGenRandom takes a ULONG: fill in chunks so no length is truncated. */
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
