package controller

import "ironbark/internal/nodeapi"

func DefaultVMTypes() []nodeapi.VMType { return nil }
