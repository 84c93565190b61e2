// A model's weights in a backend's memory: a Model whose pointers point there. For a host-memory
// backend (the CPU one) it is the model itself, nothing copied; for a device backend every
// tensor is uploaded once, and the roles and the reference run the same layer code on it.
#pragma once

#include <memory>
#include <vector>

#include "cascade/backend.h"
#include "cascade/device_buffer.h"
#include "cascade/model.h"

namespace cascade {

class DeviceModel {
 public:
  DeviceModel(Backend& be, const Model& host);
  const Model& model() const { return view_; }  // the pointers are in the backend's memory
  size_t bytes() const { return bytes_; }       // uploaded (0 for a host-memory backend)

 private:
  Model view_;
  std::vector<DeviceBuffer<float>> tensors_;
  size_t bytes_ = 0;
};

}  // namespace cascade
