package card_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
)

func ExampleParseSSN() {
	now := time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)
	s, err := card.ParseSSN("11010519491231002X", now)
	fmt.Println(s, s.AgeAt(now), err)
	_, err = card.ParseSSN("110105194912310021", now)
	fmt.Println(errors.Is(err, card.ErrSSNChecksum))
	// Output:
	// 1101**********002X 76 <nil>
	// true
}

func ExampleCardTransition() {
	_, err := card.CardTransition(storage.CardCancelled, card.ActionUnfreeze)
	fmt.Println(err, errors.Is(err, card.ErrForbiddenTransition))
	to, _ := card.CardTransition(storage.CardActive, card.ActionReportLoss)
	fmt.Println(to)
	// Output:
	// card: card.unfreeze not allowed: card is cancelled true
	// lost
}

func ExampleCheckNewPIN() {
	ssn, _ := card.ParseSSN("11010519491231002X", time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC))
	for _, pin := range []string{"123456", "777777", "491231", "730591"} {
		fmt.Println(pin, card.CheckNewPIN(pin, ssn))
	}
	// Output:
	// 123456 card: PIN not allowed: the initial PIN cannot be kept
	// 777777 card: PIN not allowed: repeated digits
	// 491231 card: PIN not allowed: birth date fragment
	// 730591 <nil>
}
