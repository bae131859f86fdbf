"""The accelerator description (AcceleratorConfig), target presets, devices and resources."""
