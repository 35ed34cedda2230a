package controller

import (
	"context"
	"database/sql"
	"encoding/base64"
	"strconv"
	"strings"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// attrString is an attribute's <value>; an empty one is left out, as EC2
// answers (<userData/>).
type attrString struct {
	Value string `xml:"value,omitempty"`
}

// attrBool is a boolean attribute's <value>.
type attrBool struct {
	Value bool `xml:"value"`
}

// attrGroup is one item of the groupSet attribute.
type attrGroup struct {
	GroupID string `xml:"groupId"`
}

// DescribeInstanceAttributeResponse is DescribeInstanceAttribute's answer:
// the instance and the one attribute asked for.
type DescribeInstanceAttributeResponse struct {
	ec2.ResponseMeta
	InstanceID            string         `xml:"instanceId"`
	InstanceType          *attrString    `xml:"instanceType,omitempty"`
	Kernel                *attrString    `xml:"kernel,omitempty"`
	Ramdisk               *attrString    `xml:"ramdisk,omitempty"`
	UserData              *attrString    `xml:"userData,omitempty"`
	DisableAPITermination *attrBool      `xml:"disableApiTermination,omitempty"`
	DisableAPIStop        *attrBool      `xml:"disableApiStop,omitempty"`
	ShutdownBehavior      *attrString    `xml:"instanceInitiatedShutdownBehavior,omitempty"`
	RootDeviceName        *attrString    `xml:"rootDeviceName,omitempty"`
	BlockDeviceMapping    *[]BlockDevice `xml:"blockDeviceMapping>item,omitempty"`
	ProductCodes          *[]string      `xml:"productCodes>item,omitempty"`
	Groups                *[]attrGroup   `xml:"groupSet>item,omitempty"`
	SourceDestCheck       *attrBool      `xml:"sourceDestCheck,omitempty"`
	EbsOptimized          *attrBool      `xml:"ebsOptimized,omitempty"`
	EnaSupport            *attrBool      `xml:"enaSupport,omitempty"`
	SriovNetSupport       *attrString    `xml:"sriovNetSupport,omitempty"`
}

// instanceAttrs is what the attributes are read from.
type instanceAttrs struct {
	owner, state, vmType, kernel, ramdisk, userData, shutdown string
	noTerminate, noStop                                       bool
	groups                                                    []GroupIdentifier
}

func (c *Cloud) loadInstanceAttrs(ctx context.Context, q store.Querier, k *call, id string) (instanceAttrs, error) {
	var a instanceAttrs
	var noTerm, noStop int
	var groups string
	err := q.QueryRow(ctx, `SELECT i.account_id, i.state, i.vm_type, i.kernel_id, i.ramdisk_id, i.user_data, i.shutdown_behavior,
		i.disable_api_termination, i.disable_api_stop, r.groups FROM instances i JOIN reservations r ON r.id = i.reservation_id
		WHERE i.id = ?`, id).Scan(&a.owner, &a.state, &a.vmType, &a.kernel, &a.ramdisk, &a.userData, &a.shutdown,
		&noTerm, &noStop, &groups)
	if err == nil && !k.owns(a.owner) {
		err = sql.ErrNoRows
	}
	if err != nil {
		return a, notFoundOr(err, ec2.NotFound("InvalidInstanceID.NotFound", id))
	}
	a.noTerminate, a.noStop = noTerm != 0, noStop != 0
	a.groups = decodeGroups(groups)
	return a, nil
}

// describeInstanceAttributeParams are the parameters it accepts.
var describeInstanceAttributeParams = []string{"InstanceId", "Attribute"}

func (c *Cloud) describeInstanceAttribute(ctx context.Context, k *call) (any, error) {
	id, err := k.required("InstanceId")
	if err != nil {
		return nil, err
	}
	attr, err := k.required("Attribute")
	if err != nil {
		return nil, err
	}
	a, err := c.loadInstanceAttrs(ctx, c.db, k, id)
	if err != nil {
		return nil, err
	}
	resp := &DescribeInstanceAttributeResponse{InstanceID: id}
	switch attr {
	case "instanceType":
		resp.InstanceType = &attrString{a.vmType}
	case "kernel":
		resp.Kernel = &attrString{a.kernel}
	case "ramdisk":
		resp.Ramdisk = &attrString{a.ramdisk}
	case "userData":
		resp.UserData = &attrString{a.userData}
	case "disableApiTermination":
		resp.DisableAPITermination = &attrBool{a.noTerminate}
	case "disableApiStop":
		resp.DisableAPIStop = &attrBool{a.noStop}
	case "instanceInitiatedShutdownBehavior":
		resp.ShutdownBehavior = &attrString{a.shutdown}
	case "rootDeviceName":
		resp.RootDeviceName = &attrString{"/dev/sda1"}
	case "blockDeviceMapping":
		resp.BlockDeviceMapping = &[]BlockDevice{}
	case "productCodes":
		resp.ProductCodes = &[]string{}
	case "groupSet":
		gs := make([]attrGroup, len(a.groups))
		for i, g := range a.groups {
			gs[i] = attrGroup{g.GroupID}
		}
		resp.Groups = &gs
	case "sourceDestCheck":
		resp.SourceDestCheck = &attrBool{true}
	case "ebsOptimized":
		resp.EbsOptimized = &attrBool{false}
	case "enaSupport":
		resp.EnaSupport = &attrBool{false}
	case "sriovNetSupport":
		resp.SriovNetSupport = &attrString{}
	default:
		return nil, ec2.InvalidParameterValue("Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
	}
	return resp, nil
}

// modifyInstanceAttributeParams are the parameters it accepts: the
// attribute as X.Value (what the SDKs send) or as Attribute + Value (the
// older form).
var modifyInstanceAttributeParams = []string{"InstanceId", "Attribute", "Value", "DisableApiTermination.Value",
	"DisableApiStop.Value", "InstanceInitiatedShutdownBehavior.Value", "UserData.Value", "InstanceType.Value",
	"SourceDestCheck.Value"}

func (c *Cloud) modifyInstanceAttribute(ctx context.Context, k *call) (any, error) {
	q := k.Query()
	id, err := k.required("InstanceId")
	if err != nil {
		return nil, err
	}
	// The change asked for, as attribute name -> value.
	changes := map[string]string{}
	for _, name := range []string{"DisableApiTermination", "DisableApiStop", "InstanceInitiatedShutdownBehavior",
		"UserData", "InstanceType", "SourceDestCheck"} {
		if v, ok := q.Sub(name).Lookup("Value"); ok {
			changes[strings.ToLower(name[:1])+name[1:]] = v
		}
	}
	if attr := q.String("Attribute"); attr != "" {
		v, err := q.Required("Value")
		if err != nil {
			return nil, err
		}
		changes[attr] = v
	}
	if len(changes) != 1 {
		return nil, ec2.InvalidParameterCombination("Exactly one attribute must be modified per request.")
	}
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		a, err := c.loadInstanceAttrs(ctx, tx, k, id)
		if err != nil {
			return err
		}
		for attr, v := range changes {
			col, val, err := instanceAttrChange(attr, v, a)
			if err != nil {
				return err
			}
			if col == "" {
				continue
			}
			if _, err := tx.Exec(ctx, `UPDATE instances SET `+col+` = ? WHERE id = ?`, val, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// instanceAttrChange checks one attribute change and says which column
// takes which value ("" when nothing is stored: a value that is already so).
func instanceAttrChange(attr, v string, a instanceAttrs) (string, any, error) {
	boolean := func() (int, error) {
		b, err := strconv.ParseBool(strings.ToLower(v))
		if err != nil {
			return 0, ec2.InvalidValue(attr, v, "Expected a boolean (true or false).")
		}
		return boolInt(b), nil
	}
	switch attr {
	case "disableApiTermination":
		b, err := boolean()
		return "disable_api_termination", b, err
	case "disableApiStop":
		b, err := boolean()
		return "disable_api_stop", b, err
	case "instanceInitiatedShutdownBehavior":
		if v != "stop" && v != "terminate" {
			return "", nil, ec2.InvalidValue(attr, v, "Expected stop or terminate.")
		}
		return "shutdown_behavior", v, nil
	case "userData":
		if a.state != nodeapi.StateStopped {
			return "", nil, incorrectState(a.state)
		}
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(raw) > 16<<10 {
			return "", nil, ec2.InvalidParameterValue("Invalid BASE64 encoding of user data, or more than 16384 bytes.")
		}
		return "user_data", v, nil
	case "sourceDestCheck":
		b, err := boolean()
		if err == nil && b == 0 {
			err = ec2.Errorf("UnsupportedOperation", "ironbark instances always check source and destination addresses.")
		}
		return "", nil, err
	case "instanceType":
		if v == a.vmType {
			return "", nil, nil
		}
		return "", nil, ec2.Errorf("UnsupportedOperation", "ironbark cannot change the type of instance; launch a new one of type %s.", v)
	}
	return "", nil, ec2.InvalidParameterValue("Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
}
