// cascade simulate: replays a trace (`cascade run --trace FILE`) under network and device
// profiles (sim.h) and prints the predicted times beside the measured ones.
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cascade/sim.h"
#include "cascade/trace_io.h"
#include "commands.h"

namespace cascade::cli {
namespace {

struct SimulateOptions {
  std::string trace;
  std::string net = "loopback";
  std::string device = "cpu-measured";
  std::string receiver = "trace";
  std::string recorded_on = "loopback";
  bool json = false;
  bool list = false;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

// "lan-10g,custom:50,1.25,nvlink": a comma also separates the two numbers of a custom profile,
// so a piece that follows "custom:X" and is a bare number belongs to it.
std::vector<std::string> split_profiles(const std::string& s) {
  std::vector<std::string> out;
  for (const std::string& piece : split_commas(s)) {
    const bool number = !piece.empty() && piece.find_first_not_of("0123456789.eE+-") == std::string::npos;
    if (number && !out.empty() && out.back().rfind("custom:", 0) == 0 &&
        out.back().find(',') == std::string::npos)
      out.back() += "," + piece;
    else
      out.push_back(piece);
  }
  return out;
}

void list_profiles() {
  std::printf("network profiles (--net):\n");
  for (const NetProfile& p : builtin_net_profiles())
    std::printf("  %-10s latency %10.6g µs   bandwidth %8.4g GB/s\n", p.name.c_str(),
                p.latency_s * 1e6, p.bandwidth_Bps / 1e9);
  std::printf("  custom:LAT_US,GBPS\n");
  std::printf("device profiles (--device):\n");
  for (const DeviceProfile& p : builtin_device_profiles()) {
    if (p.mode == DeviceProfile::Mode::roofline)
      std::printf("  %-12s roofline: %6.4g TFLOP/s, %6.4g GB/s\n", p.name.c_str(), p.peak_flops / 1e12,
                  p.mem_bw_Bps / 1e9);
    else
      std::printf("  %-12s %s\n", p.name.c_str(),
                  p.mode == DeviceProfile::Mode::measured ? "the spans' measured wall times"
                                                          : "the spans' thread CPU times");
  }
  std::printf("  custom:TFLOPS,GBPS\n");
}

void run_simulate(const SimulateOptions& o) {
  if (o.list) {
    list_profiles();
    return;
  }
  if (o.trace.empty()) throw std::invalid_argument("simulate: a trace file is required (cascade run --trace FILE makes one)");
  // Parse every profile before reading the trace: a typo fails at once.
  std::vector<NetProfile> nets;
  std::vector<DeviceProfile> devices;
  for (const std::string& n : split_profiles(o.net)) nets.push_back(parse_net_profile(n));
  for (const std::string& d : split_profiles(o.device)) devices.push_back(parse_device_profile(d));

  const NetProfile recorded_on = parse_net_profile(o.recorded_on);
  const bool from_trace = o.receiver == "trace";
  ReceiverProfile rx = from_trace ? ReceiverProfile{} : parse_receiver_profile(o.receiver);

  const Trace trace = read_trace(o.trace);
  require_all_ranks(trace, o.trace);
  const ReceiverEstimate est = estimate_receiver(trace, recorded_on);
  if (from_trace) rx = est.profile;
  std::vector<SimResult> results;
  for (const DeviceProfile& d : devices)
    for (const NetProfile& n : nets) results.push_back(simulate(trace, n, d, rx));

  if (o.json) {
    std::printf("%s\n", sim_report_json(results, o.trace, est).c_str());
    return;
  }
  const Schedule& s = trace.schedule;
  std::printf("# simulate %s: α = %d, β = %d, c = %d, δ = %d, %d prompt tokens, %d generated, "
              "%zu ranks%s\n", o.trace.c_str(), s.alpha, s.beta, s.c, s.delta, s.n_prompt,
              trace.meta.n_generated, trace.ranks.size(),
              trace.meta.complete ? "" : " (INCOMPLETE trace: the run ended early)");
  if (est.samples)
    std::printf("receivers measured in the trace (recorded on %s; %llu messages to waiting ranks): "
                "arrival to completion beyond the network mean %.1f µs, median %.1f µs, p90 %.1f µs; "
                "fit: wake-up %.1f µs + bytes / %.3g GB/s\n",
                recorded_on.name.c_str(), (unsigned long long)est.samples, est.mean_s * 1e6,
                est.median_s * 1e6, est.p90_s * 1e6, est.profile.wake_s * 1e6, est.profile.rx_Bps / 1e9);
  else
    std::printf("receivers: no estimate in the trace (no rank pair exchanged messages both ways)\n");
  for (const SimResult& r : results) std::printf("\n%s", sim_report_text(r).c_str());
  if (results.size() > 1) {
    std::printf("\nsummary (predicted seconds; measured: prefill %.6f, decode mean %.6f, run %.6f)\n",
                results[0].measured_prefill_s(),
                results[0].decode_steps() ? results[0].measured_decode_total_s() / results[0].decode_steps() : 0.0,
                results[0].measured_wall_s);
    std::printf("%-22s %-14s %12s %12s %12s %12s\n", "network", "device", "prefill", "decode mean",
                "whole run", "cp network");
    for (const SimResult& r : results) {
      const int nd = r.decode_steps();
      std::printf("%-22s %-14s %12.6f %12.6f %12.6f %12.6f\n", r.net.name.c_str(), r.device.name.c_str(),
                  r.prefill_s(), nd ? r.decode_total_s() / nd : 0.0, r.wall_s, r.critical.network_s());
    }
  }
}

}  // namespace

void add_simulate_command(CLI::App& app) {
  auto o = std::make_shared<SimulateOptions>();
  CLI::App* sub = app.add_subcommand(
      "simulate", "Predict a run's time on other networks and devices by replaying its trace "
                  "(cascade run --trace FILE) with one device and one NIC per party");
  sub->add_option("trace", o->trace, "Trace file (HDF5) written by cascade run --trace");
  sub->add_option("--net", o->net,
                  "Network profile(s), comma-separated: loopback, nvlink, ib-200g, lan-10g, lan-1g, "
                  "wan-100m, custom:LAT_US,GBPS")
      ->capture_default_str();
  sub->add_option("--device", o->device,
                  "Device profile(s), comma-separated: cpu-measured, cpu-thread, a100, h100, "
                  "custom:TFLOPS,GBPS")
      ->capture_default_str();
  sub->add_option("--receiver", o->receiver,
                  "What the receiving host adds to each message: trace (its wake-up and receive rate "
                  "measured in the trace), ideal (nothing: the network model alone), custom:WAKE_US,GBPS")
      ->capture_default_str();
  sub->add_option("--recorded-on", o->recorded_on,
                  "Network the trace ran on (for --receiver trace: its latency and transfer times are "
                  "not the receiver's)")
      ->capture_default_str();
  sub->add_flag("--json", o->json, "Print JSON (one result per network × device)");
  sub->add_flag("--list-profiles", o->list, "List the built-in profiles and exit");
  sub->callback([o] { run_simulate(*o); });
}

}  // namespace cascade::cli
