// Package idp is the OpenID provider of essc (fosite composition, one provider per profile).
package idp
