// Network and device profiles of the simulator: the built-in ones, with where their numbers
// come from, and the parsing of `--net` / `--device` values.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cascade/sim.h"

namespace cascade {
namespace {

constexpr double kUs = 1e-6;
constexpr double kGB = 1e9;  // GB/s here are 10^9 bytes per second, as vendors count them

std::vector<NetProfile> net_profiles() {
  return {
      // This machine's shared-memory MPI (Open MPI 4.1.4, 2 vCPUs, machine (B) of BENCHMARKS.md):
      // the medians of 5 fits (latency 0.56–0.63 µs, bandwidth 7.39–7.96 GB/s) of
      //   OMPI_MCA_mpi_yield_when_idle=1 mpirun --allow-run-as-root -np 2 build/cascade bench net
      // (ping-pong of 8 B … 64 MiB between the 2 ranks, 2026-11-30).
      {"loopback", 0.61 * kUs, 7.7 * kGB},
      // NVLink 4 between two H100 SXM5 GPUs: 900 GB/s total = 450 GB/s per direction (NVIDIA
      // H100 Tensor Core GPU datasheet); ~2 µs is NCCL's point-to-point latency over it.
      {"nvlink", 2.0 * kUs, 450.0 * kGB},
      // InfiniBand HDR, 200 Gb/s = 25 GB/s per direction (NVIDIA ConnectX-6 VPI datasheet); the
      // adapter's latency is sub-µs, ~2 µs is a typical MPI ping-pong latency through a switch.
      {"ib-200g", 2.0 * kUs, 25.0 * kGB},
      // 10 Gigabit Ethernet (IEEE 802.3ae: 10 Gb/s = 1.25 GB/s); ~50 µs is a one-way latency of
      // kernel TCP through one switch.
      {"lan-10g", 50.0 * kUs, 1.25 * kGB},
      // Gigabit Ethernet (IEEE 802.3ab: 1 Gb/s = 0.125 GB/s), ~100 µs one way.
      {"lan-1g", 100.0 * kUs, 0.125 * kGB},
      // A 100 Mb/s wide-area link (0.0125 GB/s) with 20 ms one way (a continental distance).
      {"wan-100m", 20000.0 * kUs, 0.0125 * kGB},
  };
}

std::vector<DeviceProfile> device_profiles() {
  using M = DeviceProfile::Mode;
  return {
      {"cpu-measured", M::measured, 0.0, 0.0},
      {"cpu-thread", M::thread_time, 0.0, 0.0},
      // NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5 TFLOP/s (no tensor cores: our GEMMs are
      // fp32), 1,555 GB/s for the 40 GB SXM4 (HBM2; the 80 GB HBM2e one has 2,039 GB/s).
      {"a100", M::roofline, 19.5e12, 1555.0 * kGB},
      // NVIDIA H100 Tensor Core GPU datasheet, H100 SXM5: FP32 67 TFLOP/s, HBM3 3.35 TB/s.
      {"h100", M::roofline, 67.0e12, 3350.0 * kGB},
  };
}

// "50,1.25" → {50, 1.25}; false unless exactly two finite numbers, both ≥ 0.
bool parse_pair(const std::string& s, double& a, double& b) {
  const size_t comma = s.find(',');
  if (comma == std::string::npos) return false;
  auto num = [](const std::string& t, double& out) {
    if (t.empty()) return false;
    char* end = nullptr;
    errno = 0;
    out = std::strtod(t.c_str(), &end);
    return errno == 0 && end == t.c_str() + t.size() && std::isfinite(out) && out >= 0.0;
  };
  return num(s.substr(0, comma), a) && num(s.substr(comma + 1), b);
}

std::string trim_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

template <class P>
std::string names(const std::vector<P>& ps) {
  std::string s;
  for (const P& p : ps) s += (s.empty() ? "" : ", ") + p.name;
  return s;
}

}  // namespace

std::vector<NetProfile> builtin_net_profiles() { return net_profiles(); }
std::vector<DeviceProfile> builtin_device_profiles() { return device_profiles(); }

std::string custom_net_spec(double latency_s, double bandwidth_Bps) {
  return "custom:" + trim_number(latency_s / kUs) + "," + trim_number(bandwidth_Bps / kGB);
}

NetProfile parse_net_profile(const std::string& spec) {
  for (const NetProfile& p : net_profiles())
    if (p.name == spec) return p;
  const std::string forms = "accepted: " + names(net_profiles()) +
                            ", or custom:LAT_US,GBPS (latency in µs, bandwidth in GB/s, e.g. custom:50,1.25)";
  if (spec.rfind("custom:", 0) == 0) {
    double lat_us = 0, gbps = 0;
    if (!parse_pair(spec.substr(7), lat_us, gbps) || gbps <= 0.0)
      throw std::invalid_argument("bad network profile '" + spec +
                                  "': custom needs a latency ≥ 0 and a bandwidth > 0; " + forms);
    return {spec, lat_us * kUs, gbps * kGB};
  }
  throw std::invalid_argument("unknown network profile '" + spec + "'; " + forms);
}

DeviceProfile parse_device_profile(const std::string& spec) {
  for (const DeviceProfile& p : device_profiles())
    if (p.name == spec) return p;
  const std::string forms = "accepted: " + names(device_profiles()) +
                            ", or custom:TFLOPS,GBPS (peak TFLOP/s and memory GB/s, e.g. custom:19.5,1555)";
  if (spec.rfind("custom:", 0) == 0) {
    double tflops = 0, gbps = 0;
    if (!parse_pair(spec.substr(7), tflops, gbps) || tflops <= 0.0 || gbps <= 0.0)
      throw std::invalid_argument("bad device profile '" + spec +
                                  "': custom needs a peak and a bandwidth, both > 0; " + forms);
    return {spec, DeviceProfile::Mode::roofline, tflops * 1e12, gbps * kGB};
  }
  throw std::invalid_argument("unknown device profile '" + spec + "'; " + forms);
}

ReceiverProfile parse_receiver_profile(const std::string& spec) {
  const std::string forms = "accepted: ideal, or custom:WAKE_US,GBPS (wake-up in µs, receive "
                            "processing in GB/s, 0 or inf for none, e.g. custom:75,5)";
  if (spec == "ideal") return ReceiverProfile{};
  if (spec.rfind("custom:", 0) == 0) {
    const std::string rest = spec.substr(7);
    const size_t comma = rest.find(',');
    double wake_us = 0, gbps = 0;
    const bool inf = comma != std::string::npos && rest.substr(comma + 1) == "inf";
    if (inf ? !parse_pair(rest.substr(0, comma) + ",0", wake_us, gbps) : !parse_pair(rest, wake_us, gbps))
      throw std::invalid_argument("bad receiver profile '" + spec + "'; " + forms);
    return {spec, wake_us * kUs, inf ? 0.0 : gbps * kGB};
  }
  throw std::invalid_argument("unknown receiver profile '" + spec + "'; " + forms);
}

double span_seconds(const Span& span, const DeviceProfile& device) {
  switch (device.mode) {
    case DeviceProfile::Mode::measured:
      return std::max(0.0, span.seconds());
    case DeviceProfile::Mode::thread_time:
      return std::max(0.0, span.cpu_s);
    case DeviceProfile::Mode::roofline:
      // The host's own work (send, other) at its CPU time: on a trace of more ranks than cores
      // its wall time also holds the time slices other ranks got.
      if (!is_compute(span.kind)) return std::max(0.0, span.cpu_s);
      return std::max(span.flops / device.peak_flops, span.mem_bytes / device.mem_bw_Bps);
  }
  return 0.0;
}

}  // namespace cascade
